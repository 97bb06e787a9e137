"""``python -m adapters.bento.build [NAME:VERSION ...]`` (``make bento MODELS="..."``): a Bento of
exactly the chosen versions, with exactly the packages they need.

Each selection is ``name:version`` with a version, ``latest`` or ``best`` (resolved now, as the
server resolves them); without one, every stored version of each model of ``OIP_MODELS`` (the
default models unless set), as a plain ``bentoml build``. Nothing is trained. The Bento is
built from ``bentofile.yaml`` with two changes, written to a build file of its own:

* ``OIP_MODELS`` in the image is the selected names;
* XGBoost's and LightGBM's pinned packages (``requirements-boosting.txt``) are added to
  ``requirements.txt`` when a selected version needs them (its recorded ``saved_with``, else
  the classes of its estimator): the image grows with the selection, not with the store.

``service.py`` then packs the selected versions only (``OIP_BENTO_MODELS``,
:func:`adapters.bento.wiring.check_store`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from adapters.bento.wiring import check_store
from adapters.config.fields import ConfigError
from adapters.config.settings import Settings
from adapters.models.libraries import saved_with

ROOT = Path(__file__).resolve().parents[2]
BOOSTING = ROOT / "requirements-boosting.txt"
BUILD_DIR = "bento-build"  # the generated build files, inside the build context
NEEDS = {"xgboost": ("xgboost-cpu",), "lightgbm": ("lightgbm", "narwhals")}
"""Library -> the packages of requirements-boosting.txt it needs in an image."""


def libraries(tag: str) -> set[str]:
    """The libraries a stored version needs: recorded at save, else its estimator's classes."""
    import bentoml

    model = bentoml.models.get(tag)
    recorded: Any = model.info.metadata.get("saved_with")
    if isinstance(recorded, dict) and recorded:
        return {str(library) for library in recorded}
    return set(saved_with(bentoml.sklearn.load_model(model)))


def packages(tags: Sequence[str]) -> list[str]:
    """The pinned lines of ``requirements-boosting.txt`` the versions need, in file order."""
    wanted = {p for tag in tags for lib in libraries(tag) for p in NEEDS.get(lib, ())}
    pins = [line.strip() for line in BOOSTING.read_text().splitlines()]
    return [pin for pin in pins if pin.split("==")[0] in wanted]


def bentofile(names: Sequence[str], requirements: Path) -> dict[str, Any]:
    """``bentofile.yaml`` with the image's ``OIP_MODELS`` and ``requirements`` (BentoML takes
    one requirements file, and ignores ``packages`` beside it)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    envs = [e for e in config.get("envs", []) if e["name"] != "OIP_MODELS"]
    config["envs"] = [{"name": "OIP_MODELS", "value": ",".join(names)}, *envs]
    config.setdefault("python", {})["requirements_txt"] = f"./{requirements}"
    return config


def build(selection: Sequence[str]) -> tuple[str, list[str]]:
    """Build the Bento; returns its tag and the model tags it packs.

    Raises:
        ConfigError: a selection that does not name stored, servable versions.
        RuntimeError: ``bentoml build`` failed (its output says why).
    """
    entries = [e for item in selection for e in item.replace(",", " ").split()]
    env = dict(os.environ)
    if entries:
        names = list(dict.fromkeys(e.partition(":")[0] for e in entries))
        env.update(OIP_MODELS=",".join(names), OIP_BENTO_MODELS=" ".join(entries))
    settings = Settings.from_env(env)
    tags = check_store(settings)
    extra = packages(tags)
    (ROOT / BUILD_DIR).mkdir(exist_ok=True)
    # NOTE: BentoML takes the requirements file by a path relative to the build context only
    with tempfile.TemporaryDirectory(prefix="build-", dir=ROOT / BUILD_DIR) as work:
        requirements = Path(work) / "requirements.txt"
        lines = [(ROOT / "requirements.txt").read_text().rstrip()]
        if extra:
            lines += ["# what the versions this Bento packs need (requirements-boosting.txt)"]
            lines += extra
        requirements.write_text("\n".join(lines) + "\n")
        path = Path(work) / "bentofile.yaml"
        config = bentofile(settings.models, requirements.relative_to(ROOT))
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        bentoml = Path(sys.executable).parent / "bentoml"
        done = subprocess.run(
            [str(bentoml), "build", "-f", str(path), "--output", "tag", str(ROOT)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    with contextlib.suppress(OSError):  # empty unless another build runs
        (ROOT / BUILD_DIR).rmdir()
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag, tags


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.bento.build",
        description="Build the Bento of exactly the chosen versions (nothing is trained).",
    )
    parser.add_argument(
        "selection", nargs="*", help="name:version (a version, latest or best); none: all"
    )
    args = parser.parse_args(argv)
    try:
        tag, models = build(args.selection)
    except (ConfigError, RuntimeError) as exc:
        print(f"bento: {exc}", file=sys.stderr)
        return 2
    print(f"built {tag} with {', '.join(models)}")
    print(f"container: make container BENTO={tag}  (or bentoml containerize {tag})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
