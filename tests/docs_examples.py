"""The shell examples of the Markdown documents, and how an answer is compared with one.

An example is a ``$ `` line in a fenced ``text`` block; what it prints is the lines after it, up
to the next ``$ `` line or the end of the block. A block with a ``curl`` command is *live*: all
of its commands are run, in order, against a real server (``tests/test_docs.py``). A block
preceded by ``<!-- not run: reason -->`` is not run, and says why. A ``$ curl`` line anywhere
else (another fence, or prose) could be neither run nor marked: :func:`orphans` finds those.

Answers are compared as a reader compares them, not byte for byte: JSON structurally, and what
legitimately differs from run to run is left out (:func:`assert_same`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
CURL = re.compile(r"^\s*\$ .*\bcurl\b")
# `$ OIP_PREDICTIONS_DB=... make serve`: the test server stands for it, with those variables set
SERVER = re.compile(r"^((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)make serve$")

# A BentoML version: 16 lower-case letters and digits, at least one a letter, standing alone
# ("iris:<version>" too; not the 16 digits after a decimal point).
VERSION = re.compile(r"(?<![\w.])(?=\d*[a-z])[a-z0-9]{16}(?!\w)")
# The Date header of `curl -i`: the time of the answer (every other header is compared).
DATE_HEADER = re.compile(r"^date: .*$", re.IGNORECASE | re.MULTILINE)
# Values of these keys are times, not results: durations (ns), timestamps of the run.
TIMES = frozenset({"ns", "last_inference", "created", "scored_at"})
# Floats agree within this. The models are trained by the test, on this CPU: lbfgs stops at
# its tolerance (1e-4) along a path that depends on the BLAS's rounding, so the probabilities
# of a model trained elsewhere differ by ~1e-4. 1e-3 leaves ten times that and still fails on
# any edit of a figure's first three digits.
TOLERANCE = 1e-3
NUMBER = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")
DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Example:
    """One ``$ `` command of a live block and the output the document shows for it."""

    path: Path
    line: int  # 1-based, of the command
    command: str  # without the "$ "
    expected: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def server_env(self) -> list[str] | None:
        """The variables of a ``make serve`` line (the test server stands for it), else None."""
        found = SERVER.match(self.command)
        return None if found is None else [a.split("=")[0] for a in found.group(1).split()]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    lines: list[str]
    not_run: str  # the reason of a `<!-- not run: ... -->` before it, or ""

    @property
    def live(self) -> bool:
        return self.lang == "text" and any(CURL.match(line) for line in self.lines)

    def examples(self) -> Iterator[Example]:
        commands = [i for i, line in enumerate(self.lines) if line.startswith("$ ")]
        for n, i in enumerate(commands):
            end = commands[n + 1] if n + 1 < len(commands) else len(self.lines)
            expected = "\n".join(self.lines[i + 1 : end])
            yield Example(self.path, self.line + 1 + i, self.lines[i][2:], expected)


def blocks(path: Path, text: str) -> Iterator[Block]:
    """Every fenced block of a Markdown text, with the ``not run`` reason just before it."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, start = opening.group(1), i
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        before = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        marked = NOT_RUN.match(before)
        reason = marked.group(1) if marked else ""
        yield Block(path, start + 1, opening.group(2), lines[start + 1 : i], reason)
        i += 1


def orphans(path: Path, text: str) -> list[str]:
    """``$ curl`` lines in no ``text`` block and no marked one: neither run nor marked."""
    inside: set[int] = set()
    for block in blocks(path, text):
        if block.lang == "text" or block.not_run:
            inside |= set(range(block.line + 1, block.line + 1 + len(block.lines)))
    lines = text.splitlines()
    return [
        f"{path}:{n}" for n, line in enumerate(lines, 1) if CURL.match(line) and n not in inside
    ]


def normalised(text: str) -> str:
    """Line ends as a terminal shows them, no trailing blank lines, any Date header's value
    left out, and each distinct version numbered in order of appearance (so a text that names
    one version twice still must)."""
    names: dict[str, str] = {}

    def number(found: re.Match[str]) -> str:
        return names.setdefault(found.group(0), f"<version-{len(names) + 1}>")

    text = DATE_HEADER.sub("date: <date>", text.replace("\r\n", "\n"))
    return VERSION.sub(number, text).rstrip()


def segments(text: str) -> list[Any]:
    """The text cut into JSON values (wherever one parses from a ``{`` or ``[``) and the text
    between them, so that JSON is compared as data and the rest as text."""
    out: list[Any] = []
    i, plain = 0, ""
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = DECODER.raw_decode(text, i)
            except json.JSONDecodeError:
                pass
            else:
                if plain:
                    out.append(plain)
                out.append(Json(value))
                i, plain = end, ""
                continue
        plain += text[i]
        i += 1
    return [*out, plain] if plain else out


@dataclass(frozen=True)
class Json:
    value: Any


def assert_same(expected: str, actual: str) -> None:
    """Raise AssertionError saying where ``actual`` differs from what the document shows."""
    want, got = segments(normalised(expected)), segments(normalised(actual))
    if len(want) != len(got) or any(type(w) is not type(g) for w, g in zip(want, got, strict=True)):
        raise AssertionError("not the same shape of output (JSON values and text between them)")
    for n, (w, g) in enumerate(zip(want, got, strict=True)):
        if isinstance(w, Json):
            same_value(w.value, g.value, f"JSON value {n + 1}")
        else:
            same_text(w, g, f"text {n + 1}")


def same_value(want: Any, got: Any, where: str) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        if want.keys() != got.keys():
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            raise AssertionError(f"{where}: keys missing {missing}, not in the document {extra}")
        for key in want:
            if key not in TIMES:
                same_value(want[key], got[key], f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            raise AssertionError(f"{where}: {len(got)} items, the document shows {len(want)}")
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            same_value(w, g, f"{where}[{i}]")
    elif isinstance(want, str) and isinstance(got, str):
        same_text(want, got, where)
    elif is_float(want) or is_float(got):
        if not (is_number(want) and is_number(got) and close(want, got)):
            raise AssertionError(f"{where}: {got!r}, the document shows {want!r}")
    elif type(want) is not type(got) or want != got:
        raise AssertionError(f"{where}: {got!r}, the document shows {want!r}")


def same_text(want: str, got: str, where: str) -> None:
    """Equal text, except that numbers with a fraction or exponent may differ by TOLERANCE."""
    w, g = NUMBER.split(want), NUMBER.split(got)
    fine = len(w) == len(g) and all(
        a == b or (i % 2 == 1 and ("." in a + b or "e" in (a + b).lower()) and close(a, b))
        for i, (a, b) in enumerate(zip(w, g, strict=True))
    )
    if not fine:
        raise AssertionError(f"{where}: {got!r}, the document shows {want!r}")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_float(value: Any) -> bool:
    return isinstance(value, float)


def close(a: float | str, b: float | str) -> bool:
    return math.isclose(float(a), float(b), rel_tol=TOLERANCE, abs_tol=TOLERANCE)
