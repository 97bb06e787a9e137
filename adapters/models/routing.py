"""A model's rollout: which version answers a request, which one shadows it, whether its
inferences are logged.

A ``[model.<name>]`` section may declare **weighted aliases** over versions or other aliases
(``canary = {"<v1>" = 90, "<v2>" = 10}``). A request for such an alias (or for the model's
default, when the default is one) picks a version per request, by weight. Each request draws one
point in ``[0, 1)``: at random, or, when it carries a routing key (the request parameter
``routing_key``), from a hash of the key, so the same key lands on the same version in every
worker and after every restart. The point falls into one target's share of the alias; a target
that is itself a weighted alias takes the point rescaled into that share, so one point routes
through any nesting. Targets keep their configured order: growing the last target's weight (a
canary from 10 to 20) moves only keys from the others to it, never keys off it.

:class:`~adapters.models.registry.ServedModel` resolves through these; the repository re-reads a
model's :class:`Rollout` on every load, so weights change without a restart.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

COMPUTED = ("latest", "best")
"""Aliases the registry computes from the store; no configured alias may take these names."""


@dataclass(frozen=True)
class Rollout:
    """What a model's configuration says about serving its versions.

    Attributes:
        default: the version or alias of the model's unversioned routes.
        aliases: weighted aliases, alias -> {version or alias: weight}, in configured order.
        shadow: a version or alias every request the default answers also runs on, or ``None``.
        log_inferences: whether its inferences are written to the predictions database.
    """

    default: str = "latest"
    aliases: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    shadow: str | None = None
    log_inferences: bool = False


def route_point(key: str) -> float:
    """The point in ``[0, 1)`` of a routing key: the same for the same key in every process
    (blake2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def draw(key: str | None) -> float:
    """A request's point: from its routing key when it has one, else at random."""
    return random.random() if key is None else route_point(key)


class Split:
    """One weighted alias: its targets, each with a share of ``[0, 1)`` in configured order.

    Raises:
        ValueError: no target has a positive weight.
    """

    def __init__(self, name: str, weights: Mapping[str, float]) -> None:
        targets = [(target, float(weight)) for target, weight in weights.items() if weight > 0]
        total = sum(weight for _, weight in targets)
        if not targets or total <= 0:
            raise ValueError(f"alias '{name}' has no target with a positive weight")
        self.name = name
        self.targets = tuple(target for target, _ in targets)
        self.bounds = tuple(itertools.accumulate(weight / total for _, weight in targets))
        self.heaviest = max(targets, key=lambda pair: pair[1])[0]

    def pick(self, point: float) -> tuple[str, float]:
        """The target whose share holds ``point``, and the point rescaled into that share."""
        index = min(bisect.bisect_right(self.bounds, point), len(self.targets) - 1)
        low = self.bounds[index - 1] if index else 0.0
        width = self.bounds[index] - low
        inner = (point - low) / width if width > 0 else 0.0
        return self.targets[index], min(max(inner, 0.0), 1.0 - 2**-53)


def splits(aliases: Mapping[str, Mapping[str, float]]) -> dict[str, Split]:
    """The weighted aliases of a configuration, checked: no computed name taken, a positive
    weight in each, and no alias reaching itself.

    Raises:
        ValueError: naming the alias.
    """
    taken = [alias for alias in aliases if alias in COMPUTED]
    if taken:
        raise ValueError(f"alias '{taken[0]}' is computed from the store; name yours otherwise")
    found = {alias: Split(alias, weights) for alias, weights in aliases.items()}
    for alias in found:
        _acyclic(found, alias, ())
    return found


def _acyclic(found: Mapping[str, Split], alias: str, path: tuple[str, ...]) -> None:
    if alias in path:
        raise ValueError(f"alias '{alias}' reaches itself ({' -> '.join([*path, alias])})")
    for target in found[alias].targets:
        if target in found:
            _acyclic(found, target, (*path, alias))
