"""The relative links of the Markdown documents, and whether each one leads somewhere.

A link is ``[text](target)`` (or an image, ``![alt](target)``) outside code: fenced blocks and
inline code spans are left out, since a ``[...](...)`` there is an example, not a link. Links
with a scheme (``https:``, ``mailto:``) point off the repository and are not followed. A
relative target must exist, from the document's own directory and inside the repository; a
``#anchor`` must be a heading of the Markdown file it points to (the document itself when the
target is only ``#anchor``), by GitHub's rule for heading ids (:func:`slug`). An anchor into a
file that is not Markdown (a line of code, say) is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+).*?\1")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    path: Path  # the document, relative to the repository
    line: int
    target: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}: {self.target}"


def outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """Each line outside fenced blocks, numbered from 1."""
    fence = ""
    for n, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence:
            if line.strip().startswith(fence):
                fence = ""
            continue
        if opening:
            fence = opening.group(1)
            continue
        yield n, line


def links(path: Path, text: str) -> list[Link]:
    """Every link of a Markdown text outside code (code spans are blanked first)."""
    return [
        Link(path, n, found.group(1))
        for n, line in outside_fences(text)
        for found in LINK.finditer(CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line))
    ]


def slug(heading: str) -> str:
    """GitHub's id of a heading: link text kept and its target dropped, then lower case, every
    character but letters, digits, ``_``, ``-`` and spaces dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The ids of a Markdown text's headings; a repeated id gets ``-1``, ``-2``, ... as on
    GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in outside_fences(text):
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(1).replace("`", ""))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken(root: Path, link: Link) -> str:
    """Why ``link`` of a document under ``root`` leads nowhere, or "" when it resolves."""
    if SCHEME.match(link.target):
        return ""
    name, _, anchor = link.target.partition("#")
    document = root / link.path
    target = (document.parent / name).resolve() if name else document.resolve()
    if not target.is_relative_to(root.resolve()):
        return f"{name} is outside the repository"
    if not target.exists():
        return f"{name} does not exist"
    if (
        anchor
        and target.suffix == ".md"
        and anchor not in anchors(target.read_text(encoding="utf-8"))
    ):
        return f"{target.relative_to(root.resolve())} has no heading #{anchor}"
    return ""
