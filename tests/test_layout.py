"""The package's layout holds: dependencies point one way (the import-linter contracts of
pyproject.toml), no import cycle, the protocol loads no web framework, small modules and
packages (``docs/architecture.md``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adapters"
MAX_MODULE_LINES = 300
MAX_PACKAGE_MODULES = 12


def hand_written() -> list[Path]:
    """Every module of the package but the generated gRPC code."""
    return [p for p in PACKAGE.rglob("*.py") if "generated" not in p.parts]


def test_the_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("adapters")
    modules = set(graph.modules)
    cycles = []
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert cycles == []


def test_importing_the_protocol_loads_no_framework() -> None:
    """The datatype enum and the codecs come without Starlette, BentoML or grpc."""
    code = (
        "import sys, adapters.protocol.schemas, adapters.protocol.codecs, "
        "adapters.protocol.binary, adapters.protocol.errors; "
        "print(sorted(m for m in ('starlette', 'bentoml', 'grpc', 'uvicorn') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_every_hand_written_module_is_small() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in hand_written()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_every_package_holds_few_modules() -> None:
    crowded = {
        str(d.relative_to(ROOT)): n
        for d in [PACKAGE, *(p.parent for p in PACKAGE.rglob("__init__.py"))]
        if "generated" not in d.parts and (n := len(list(d.glob("*.py")))) > MAX_PACKAGE_MODULES
    }
    assert crowded == {}
