"""Saving your own model, the public way: ``python -m adapters.register NAME FILE ...`` (a file or
a KServe folder), ``python -m adapters.register --from-mlserver DIR`` (MLServer model folders) and
``from adapters.register import save_estimator`` (the code: :mod:`adapters.models.register`,
:mod:`adapters.models.mlserver`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from adapters.models import mlserver, register
from adapters.models.register import save_estimator

__all__ = ["main", "save_estimator"]


def main(argv: Sequence[str] | None = None) -> int:
    """Either command, by its arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--from-mlserver" or a.startswith("--from-mlserver=") for a in args):
        return mlserver.main(args)
    return register.main(args)


if __name__ == "__main__":
    sys.exit(main())
