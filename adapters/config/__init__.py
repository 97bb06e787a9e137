"""Configuration: every ``OIP_*`` setting defined once (:mod:`~adapters.config.environment`:
name, type, default, description; :mod:`~adapters.config.sections`: a model's section), read
from the environment and the ``OIP_CONFIG`` file (:mod:`~adapters.config.sources`) into what the
code uses (:mod:`~adapters.config.settings`), and the reference generated from the definitions
(:mod:`~adapters.config.reference`, ``docs/configuration.md``).

May import :mod:`adapters.models` (a per-model signature, a model's rollout) and
:mod:`adapters.protocol`.
"""

from __future__ import annotations

from adapters.config.fields import ConfigError
from adapters.config.settings import DEFAULT_MODELS, Batching, Limits, Placement, Settings

__all__ = ["DEFAULT_MODELS", "Batching", "ConfigError", "Limits", "Placement", "Settings"]
