"""Models: what the BentoML store holds and what it means to serve it.

Signatures (:mod:`~adapters.models.signature`, derived by :mod:`~adapters.models.introspect`),
saving your own model (:mod:`~adapters.models.register`), names, versions and aliases
(:mod:`~adapters.models.registry`), the store loaded into the registry
(:mod:`~adapters.models.repository`), and a request's inputs checked against a signature
(:mod:`~adapters.models.inputs`).

May import :mod:`adapters.protocol` and BentoML's public model API (``bentoml.models``,
``bentoml.sklearn``); nothing above it.
"""
