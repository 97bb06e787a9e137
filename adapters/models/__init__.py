"""Models: what the BentoML store holds and what it means to serve it.

Signatures (:mod:`~adapters.models.signature`, derived by :mod:`~adapters.models.introspect`),
saving your own model (:mod:`~adapters.models.register`; model files and KServe folders,
:mod:`~adapters.models.folders`; MLServer folders, :mod:`~adapters.models.mlserver`), the library
versions a version was saved and is served with (:mod:`~adapters.models.libraries`), names,
versions and aliases (:mod:`~adapters.models.registry`; weighted ones and the rest of a model's
rollout: :mod:`~adapters.models.routing`), the store loaded into the registry
(:mod:`~adapters.models.repository`), and a request's inputs checked against a signature
(:mod:`~adapters.models.inputs`; a request of columns, :mod:`~adapters.models.columns`).

May import :mod:`adapters.protocol` and BentoML's public model API (``bentoml.models``,
``bentoml.sklearn``); nothing above it.
"""
