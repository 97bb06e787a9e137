"""Models: what the BentoML store holds and what it means to serve it.

Signatures (:mod:`~adapters.models.signature`, derived by :mod:`~adapters.models.introspect`),
saving your own model (:mod:`~adapters.models.register`), names, versions and aliases
(:mod:`~adapters.models.registry`; weighted ones and the rest of a model's rollout:
:mod:`~adapters.models.routing`), the store loaded into the registry
(:mod:`~adapters.models.repository`), a request's inputs checked against a signature
(:mod:`~adapters.models.inputs`), and a version's warm-up input (:mod:`~adapters.models.warmup`).

May import :mod:`adapters.protocol` and BentoML's public model API (``bentoml.models``,
``bentoml.sklearn``); nothing above it.
"""
