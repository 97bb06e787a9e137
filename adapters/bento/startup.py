"""What start-up does differently from a plain BentoML service, and why: both are about time
from launch to ready, which ``bentoml serve`` spends twice (the CLI imports the service to plan
the workers, then each worker imports it again and loads the models).

* **Store reads through libyaml.** BentoML reads a stored version's ``model.yaml`` with
  ``yaml.safe_load``, PyYAML's pure-Python parser: about 11 ms a file on this project's
  reference machine, paid for every version of every served model several times over at start-up
  (the store checks, BentoML's own model resolution, the repository scan). PyYAML's wheels carry
  its C parser (``CSafeLoader``: the same YAML 1.1 rules, the same safe constructors), which
  reads the same file in about 1.3 ms. :func:`read_yaml_with_libyaml` makes ``yaml.safe_load``
  use it in this process, and does nothing where PyYAML was built without libyaml.
* **No garbage collection while starting.** Imports and model loads allocate objects that live
  as long as the process; collections during start-up scan them for nothing (about 5 % of the
  import time of scikit-learn). :func:`collections_paused` pauses collection for a start-up
  phase, then moves what it loaded out of every later collection (``gc.freeze``).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml


def read_yaml_with_libyaml() -> None:
    """``yaml.safe_load`` through PyYAML's C parser, for BentoML's store reads in this process."""
    if getattr(yaml, "__with_libyaml__", False):  # again is the same: a partial of yaml.load
        c_safe_load: Any = functools.partial(yaml.load, Loader=yaml.CSafeLoader)
        yaml.safe_load = c_safe_load


@contextmanager
def collections_paused() -> Iterator[None]:
    """No garbage collection inside; what was allocated is frozen (never collected) after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
