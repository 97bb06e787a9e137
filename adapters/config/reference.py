"""``python -m adapters.config.reference [PATH]``: the configuration reference,
``docs/configuration.md``, rendered from the settings' definitions
(:mod:`adapters.config.environment`), so it cannot drift from them: every variable with its
accepted values, default and description, the per-model file keys, the file itself, and what a
start-up error looks like (produced by the real validation).
``make docs`` writes it; ``tests/test_reference.py`` fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import annotated_types
import yaml
from pydantic.fields import FieldInfo

from adapters.config.environment import DEFAULTS, FIELDS, Environment, ModelSection
from adapters.config.fields import PREFIX, ConfigError, Group
from adapters.config.settings import Settings
from adapters.protocol.codecs import MAX_RANK
from adapters.protocol.schemas import MAX_PROBLEM_CHARS, MAX_PROBLEMS, MAX_TENSORS

PATH = Path("docs/configuration.md")
KINDS: dict[Any, str] = {int: "integer", float: "number"}

INTRO = {
    Group.SERVING: "What is served, where each model's predict runs, and which version answers.",
    Group.BATCHING: (
        "Concurrent calls of one model merge into one predict, in both placements: in process, "
        "each model has its own queue and worker thread; on the runner, BentoML's batching, "
        "with a batch sent as soon as the model's API is idle (no wait for company). A "
        "`[model.<name>]` section gives a model values of its own."
    ),
    Group.LIMITS: (
        "Every request is bounded in time and memory before work is done on it; the defaults "
        'protect a 2 GiB pod. Each refusal is a V2 `{"error"}` that names the variable to '
        f"raise. Fixed, not settings: at most {MAX_TENSORS} inputs (and requested outputs) per "
        f"request and {MAX_RANK} dimensions per tensor (past either, 400); one error lists at "
        f"most {MAX_PROBLEMS} validation problems (`and N more`), each cut at "
        f"{MAX_PROBLEM_CHARS} characters."
    ),
    Group.SECURITY: (
        "Authentication and CORS are off unless set, and cost nothing per request while off. "
        "Without any of them, a `POST` with a content type a web page may send cross-site "
        "without a preflight is refused with 415."
    ),
    Group.GRPC: "The gateway also speaks gRPC, in every gateway worker.",
    Group.OPERATIONS: "Logs, traces, the server's name and the predictions database.",
}

EXAMPLE = """\
models = ["iris", "churn"]
placement = "inprocess"          # every model, unless named below or in OIP_PLACEMENT
max_batch_size = 32

[model.iris]
shadow = "best"                  # every request the default answers also runs on best

[model.iris.aliases]             # weighted: /v2/models/iris/versions/canary/infer
canary = { latest = 90, best = 10 }

[model.churn]
placement = "runner"
default_version = "best"
max_batch_size = 16              # batching of its own; the other models keep the server's
max_latency_ms = 200

[model.churn.signature]          # overrides the stored or derived signature of every version
frame = true
inputs = [
  { name = "age", datatype = "FP64", shape = [-1] },
  { name = "city", datatype = "BYTES", shape = [-1] },
]
outputs = [{ name = "predict", datatype = "INT64", shape = [-1] }]
"""
"""The documented file; the tests read it as the server would."""

BAD: tuple[tuple[dict[str, str], str], ...] = (
    ({"OIP_WORKERS": "two"}, ""),
    ({"OIP_MODLES": "iris"}, ""),
    ({"OIP_PLACEMENT": "irsi=runner"}, ""),
    ({"OIP_CONFIG": "oip.toml"}, "[model.iris]\nmax_batch_size = 0\n"),
)
"""Bad configurations (variables, and the file's text) whose real error lines the reference
shows."""


def variable(name: str) -> str:
    return PREFIX + name.upper()


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def values(info: FieldInfo) -> str:
    """What a setting accepts: its own words for text, else from its type and constraints."""
    if "values" in _extra(info):
        return str(_extra(info)["values"])
    kind = next((t for t in get_args(info.annotation) if t is not type(None)), info.annotation)
    if kind is bool:
        return "`0` or `1`"
    words = KINDS.get(kind, "text")
    bounds = {type(rule): rule for rule in info.metadata}
    low, high = bounds.get(annotated_types.Ge), bounds.get(annotated_types.Le)
    if low is not None and high is not None:
        return f"{words} {low.ge} to {high.le}"
    if annotated_types.Gt in bounds:
        return f"{words} > {bounds[annotated_types.Gt].gt}"
    return f"{words} ≥ {low.ge}" if low is not None else words


def default(name: str) -> str:
    value = getattr(DEFAULTS, name)
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if value == "":
        return "unset"
    if isinstance(value, float):
        return f"`{value:g}`"
    if "bytes" in name and value % 2**20 == 0:
        return f"`{value}` ({value // 2**20} MiB)"
    return f"`{value}`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def settings_tables() -> list[str]:
    lines: list[str] = []
    for group in Group:
        lines += [f"### {group.value}", "", INTRO[group], ""]
        lines += [_row("variable", "values", "default", "what it does"), _row(*["---"] * 4)]
        for name, info in Environment.model_fields.items():
            if name in FIELDS and _extra(info).get("group") == group.value:
                cells = (variable(name), values(info), default(name), info.description or "")
                lines.append(_row(f"`{cells[0]}`", *cells[1:]))
        lines.append("")
    return lines


def model_keys() -> list[str]:
    lines = [_row("key", "values", "default", "what it does"), _row(*["---"] * 4)]
    for name, info in ModelSection.model_fields.items():
        fallback = f"`{variable(name)}`" if name in FIELDS else "the stored or derived one"
        fallback = str(_extra(info).get("unset", fallback))
        lines.append(_row(f"`{name}`", values(info), fallback, info.description or ""))
    return lines


def errors() -> list[str]:
    """The real error line of each :data:`BAD` configuration, as ``bentoml serve`` prints it."""
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for env, text in BAD:
            shown = " ".join(f"{k}={v}" for k, v in env.items())
            if text:
                Path(folder, env["OIP_CONFIG"]).write_text(text, encoding="utf-8")
                env = {**env, "OIP_CONFIG": str(Path(folder, env["OIP_CONFIG"]))}
                shown += f" bentoml serve service:Gateway   # {' '.join(text.split())}"
            else:
                shown += " bentoml serve service:Gateway"
            try:
                Settings.from_env(env)
            except ConfigError as exc:
                lines += [f"$ {shown}", f"oip-sklearn: configuration error: {exc}"]
            else:
                raise AssertionError(f"{env} is accepted: choose another bad example")
    return lines


def render() -> str:
    """The whole reference, Markdown."""
    as_yaml = yaml.safe_dump(tomllib.loads(EXAMPLE), sort_keys=False, default_flow_style=None)
    return "\n".join(
        [
            "# Configuration reference",
            "",
            "<!-- Generated by `make docs` (python -m adapters.config.reference) from the",
            "definitions in adapters/config/environment.py: edit the descriptions there, not this",
            "file. -->",
            "",
            "Every setting is an `OIP_*` environment variable, the same for `make serve`, `bentoml "
            "serve`, a Bento and a container, and a key of the optional configuration file "
            "(`OIP_CONFIG`). Every one has a default, so `bentoml serve` works with none set. "
            "The BentoML store is BentoML's own `BENTOML_HOME` (default `~/bentoml`).",
            "",
            "## Where settings come from",
            "",
            f"1. **Environment variables**, `{PREFIX}<NAME>`. An `{PREFIX}*` variable that is not "
            "a setting below is an error, so a misspelt one cannot go unnoticed. A flag takes "
            "`0`/`1`, `true`/`false`, `yes`/`no` or `on`/`off`.",
            "2. **The configuration file**, `OIP_CONFIG=path/to/oip.toml` (or `.yaml`, `.yml`): "
            "the same settings, by their lower-case names without `OIP_` (`models` may be a "
            "list), and per-model `[model.<name>]` sections for what variables express badly.",
            "",
            "A variable wins over the file, setting by setting. For one model, its section wins "
            "over the server-wide value, except that an entry naming the model in `OIP_PLACEMENT` "
            "or `OIP_DEFAULT_VERSION` (`churn=runner`) wins over its section.",
            "",
            "```toml",
            EXAMPLE.rstrip(),
            "```",
            "",
            "The same in YAML:",
            "",
            "```yaml",
            as_yaml.rstrip(),
            "```",
            "",
            "## Validation at start-up",
            "",
            "Everything is validated once, when `bentoml serve` loads the service and before any "
            "worker starts: an unknown variable or file key, a value of the wrong type or out of "
            "range, a per-model entry naming no served model, a file that cannot be read; then, "
            "against the store, a model with no servable version and a default version that "
            "does not exist. Each stops the server in seconds with one line naming the variable "
            "(or file key) and the value, never a worker restart loop:",
            "",
            "```text",
            *errors(),
            "```",
            "",
            "## Settings",
            "",
            *settings_tables(),
            "## Per-model sections: `[model.<name>]`",
            "",
            "Keys of a model's section of the configuration file, each optional: without it, "
            "what the default column names applies.",
            "",
            *model_keys(),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.config.reference", description=__doc__
    )
    parser.add_argument("path", nargs="?", type=Path, help=f"write here (e.g. {PATH})")
    args = parser.parse_args(argv)
    text = render()
    if args.path is None:
        sys.stdout.write(text)
    else:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
