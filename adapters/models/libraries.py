"""The libraries a stored version was saved with, and the ones serving it.

An estimator pickled by one version of scikit-learn, XGBoost or LightGBM and loaded by another
may predict differently or not load at all (scikit-learn says so with its
``InconsistentVersionWarning``, which this server never silences). So each version's metadata
``properties`` carry ``saved_with.<library>`` (scikit-learn's from the store's own record,
``framework_versions``; the others recorded by :func:`saved_with` at save) and
``served_with.<library>`` (what this process imports); a difference is logged once, when the
version is read, with both versions, and shown as ``library_mismatch``. A version that needs a
library this process does not have is refused with the package to install.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

LIBRARIES = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm"}
"""Top-level module -> the library's name, for the libraries whose estimators this server takes."""
PACKAGES = {"scikit-learn": "scikit-learn", "xgboost": "xgboost-cpu", "lightgbm": "lightgbm"}
"""The package that installs each library (XGBoost's CPU-only build: no CUDA libraries)."""


class MissingLibrary(ValueError):
    """A stored version needs a library this process cannot import."""

    def __init__(self, library: str, saved: str | None = None) -> None:
        version = f"=={saved}" if saved else ""
        super().__init__(
            f"it needs {library}{f' (saved with {saved})' if saved else ''}, which is not "
            f"installed where it is served: pip install {PACKAGES.get(library, library)}"
            f"{version}, or build the Bento with make bento, which adds it for the versions "
            "it packs"
        )
        self.library = library


def estimators_in(estimator: Any) -> Iterator[Any]:
    """The estimator and every estimator nested in it (pipeline steps, column transformers,
    ensembles' members), through scikit-learn's ``get_params(deep=True)``."""
    yield estimator
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    for value in params.values():
        if hasattr(value, "get_params") and not isinstance(value, type):
            yield value
        elif isinstance(value, list | tuple):
            for item in value:  # (name, estimator) pairs of ColumnTransformer, Voting, Stacking
                step = item[1] if isinstance(item, tuple) and len(item) > 1 else item
                if hasattr(step, "get_params") and not isinstance(step, type):
                    yield step


def saved_with(estimator: Any) -> dict[str, str]:
    """``{library: version}`` of the libraries whose classes ``estimator`` is made of, as
    installed now (what a save records)."""
    modules = {type(e).__module__.split(".")[0] for e in estimators_in(estimator)}
    found = {LIBRARIES[m]: installed(m) for m in sorted(modules) if m in LIBRARIES}
    return {library: version for library, version in found.items() if version}


def installed(module: str) -> str | None:
    """The version of ``module`` this process imports, or ``None`` when it cannot."""
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def library_properties(tag: str, info: Any, metadata: Mapping[str, Any]) -> dict[str, str]:
    """``saved_with.*``, ``served_with.*`` and, on a difference, ``library_mismatch`` of one
    stored version (``info``: its ``bentoml`` model info), the difference logged.

    Raises:
        MissingLibrary: the version was saved with a library this process cannot import.
    """
    context = getattr(info, "context", None)
    recorded = getattr(context, "framework_versions", None) or {}
    saved: dict[str, str] = {str(k): str(v) for k, v in recorded.items()}
    saved.update({str(k): str(v) for k, v in (metadata.get("saved_with") or {}).items()})
    modules: dict[str, str] = {library: module for module, library in LIBRARIES.items()}
    properties: dict[str, str] = {}
    mismatches = []
    for library, version in sorted(saved.items()):
        serving = installed(modules.get(library, library))
        if serving is None:
            raise MissingLibrary(library, version)
        properties[f"saved_with.{library}"] = version
        properties[f"served_with.{library}"] = serving
        if serving != version:
            mismatches.append(f"{library} saved {version}, served {serving}")
    if mismatches:
        properties["library_mismatch"] = "; ".join(mismatches)
        logger.warning(
            "%s was saved with other library versions than serve it (%s): its predictions may "
            "differ from the ones it was validated with",
            tag,
            properties["library_mismatch"],
        )
    return properties


def load_stored(stored: Any) -> Any:
    """A stored version's estimator; a library it needs and this process lacks is named.

    Raises:
        MissingLibrary: unpickling it needs a module this process cannot import.
    """
    import bentoml

    try:
        return bentoml.sklearn.load_model(stored)
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        raise MissingLibrary(LIBRARIES.get(module, module)) from None
