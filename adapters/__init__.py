"""The Open Inference Protocol (KServe V2, REST and gRPC) for scikit-learn models in the BentoML
store.

Packages by concern, dependencies pointing one way (checked by import-linter: ``make lint``)::

    bento      the only place that knows BentoML's, uvicorn's and PyYAML's internals; wiring
    http grpc  the two transport edges (independent of each other)
    dataplane  what every V2 operation means, whatever the transport
    batch      scoring files and tables, the predictions database
    execution  where predict runs: in process, or on the runner, with batching
    config     every setting, defined once
    models     the store, signatures, registration, registry and repository
    protocol   V2 types, datatypes, codecs, errors: pure (no web framework, BentoML or grpc)

A request's path through them, per transport: ``docs/architecture.md``. This module holds the
version only, so that importing any package imports nothing else.
"""

from __future__ import annotations

__version__ = "0.1.0"  # the one source: pyproject.toml reads it (tool.setuptools.dynamic)
