"""Execution: where a model's predict runs, and how concurrent calls merge into batches.

:mod:`~adapters.execution.runtime` (the executor protocol, the estimators, one merged predict),
:mod:`~adapters.execution.inprocess` (in the gateway process), :mod:`~adapters.execution.runner`
(the gateway's client of the runner service) and :mod:`~adapters.execution.worker` (what a
runner worker holds), :mod:`~adapters.execution.residency` (the memory budget: which versions
stay loaded), :mod:`~adapters.execution.warmup` (a version's warm-up request),
:mod:`~adapters.execution.metrics` (batch sizes).

May import :mod:`adapters.config`, :mod:`adapters.models` and :mod:`adapters.protocol`.
"""
