"""Saving your own model, the public way: ``python -m adapters.register NAME FILE ...`` and
``from adapters.register import save_estimator`` (the code: :mod:`adapters.models.register`)."""

from __future__ import annotations

import sys

from adapters.models.register import main, save_estimator

__all__ = ["main", "save_estimator"]

if __name__ == "__main__":
    sys.exit(main())
