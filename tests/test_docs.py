"""Every ``$ curl`` example of the documents, run against a real server and compared.

The documents are ``README.md`` and every ``docs/**/*.md``; their examples are found by
:mod:`tests.docs_examples` wherever they are. One server stands for ``make serve``: its own
store, trained as ``make serve`` trains it (``train.py``'s defaults) plus the second iris
version the README trains (``--param C=0.05``, so ``latest`` and ``best`` differ), and a
predictions database written by ``score.py`` for the read-back examples. The commands run with
bash, ``localhost:3000`` rewritten to that server, in the order a reader meets them (README.md,
then docs/ in name order, each top to bottom, each document in its own directory), so the
statistics an example shows are those of the examples before it. A live block's other commands
run too (the ``python -c`` that writes a binary request, say); a ``$ VAR=... make serve`` line
is the test server, which must set those variables. Each command is then one test case that
compares what it printed with what the document shows (:func:`~tests.docs_examples.assert_same`).

Without a server: every relative link of the documents, and its ``#anchor``, leads somewhere
(:mod:`tests.docs_links`), every page of ``docs/`` is linked from the README, and the README
stays short enough to be read (the reference lives in ``docs/``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from .conftest import ROOT, LiveServer, start_server, stop_server
from .docs_examples import CURL, Block, Example, assert_same, blocks, orphans
from .docs_links import SCHEME, Link, anchors, broken, links

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
README_MAX_LINES = 300  # one screen's worth of scrolling; the reference is in docs/
COMMAND_TIMEOUT_S = 60.0
PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def is_curl(example: Example) -> bool:
    return CURL.match("$ " + example.command) is not None


def document_blocks() -> list[Block]:
    return [
        block
        for path in DOCUMENTS
        for block in blocks(path.relative_to(ROOT), path.read_text(encoding="utf-8"))
    ]


BLOCKS = document_blocks()
LIVE = [example for b in BLOCKS if b.live and not b.not_run for example in b.examples()]
MARKED = [(e, b.not_run) for b in BLOCKS if b.not_run for e in b.examples() if is_curl(e)]


def test_every_curl_example_is_run_or_marked(capsys: pytest.CaptureFixture[str]) -> None:
    """A ``$ curl`` line outside a ``text`` block would be neither run nor marked."""
    found = [o for p in DOCUMENTS for o in orphans(p.relative_to(ROOT), p.read_text("utf-8"))]
    assert not found, f"put these in a ```text block, or mark theirs <!-- not run: why -->: {found}"
    curls = [e for e in LIVE if is_curl(e)]
    assert curls, "no live example found: the documents or the parser changed"
    with capsys.disabled():
        print(
            f"\ndocs: {len(LIVE)} commands to run against a live server ({len(curls)} curl), "
            f"{len(MARKED)} curl examples marked not run"
            + "".join(f"\n  not run: {e.id}: {why}" for e, why in MARKED)
        )


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without OIP_* settings and proxies (the examples talk to 127.0.0.1),
    the venv first on PATH (the examples' ``python``)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("OIP_") and k.lower() not in PROXIES
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def run_script(home: Path, *argv: str) -> None:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=clean_env(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="true"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``make serve`` on a store of its own, with ``score.py``'s predictions to read back."""
    if shutil.which("curl") is None:
        why = "no curl binary: apt-get install -y curl (.ci/run does)"
        if os.environ.get("CI"):  # CI installs it: missing there, the examples would go unrun
            pytest.fail(why)
        pytest.skip(why)
    root = tmp_path_factory.mktemp("docs")
    home = root / "bentoml"
    run_script(home, "train.py")  # make serve's training: the default models
    run_script(home, "train.py", "--model", "iris", "--param", "C=0.05")
    rows = pd.DataFrame(load_iris().data, columns=["a", "b", "c", "d"])
    rows.insert(0, "id", [f"row-{i}" for i in range(len(rows))])
    rows.to_csv(root / "iris_rows.csv", index=False)
    db = f"sqlite:///{root / 'predictions.db'}"
    run_script(home, "score.py", "--model", "iris", "--version", "best", "--quiet",
               "--input", str(root / "iris_rows.csv"), "--db", db)  # fmt: skip
    server = start_server(home, {"OIP_PREDICTIONS_DB": db}, root / "serve.log")
    yield server
    stop_server(server)


SERVER_ENV = {"OIP_PREDICTIONS_DB"}  # what docs_server sets beyond the defaults


@dataclass(frozen=True)
class Ran:
    stdout: str
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def replayed(
    docs_server: LiveServer,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> dict[str, Ran]:
    """Every live command, run once in reading order; test cases only compare."""
    address = docs_server.url.removeprefix("http://")
    results: dict[str, Ran] = {}
    started = time.monotonic()
    for path in dict.fromkeys(e.path for e in LIVE):
        cwd = tmp_path_factory.mktemp("reader")
        for example in (e for e in LIVE if e.path == path):
            if example.server_env is not None:  # the test server stands for `make serve`
                unset = sorted(set(example.server_env) - SERVER_ENV)
                results[example.id] = Ran(
                    "", f"the test server does not set {unset}", int(bool(unset))
                )
                continue
            done = subprocess.run(
                ["bash", "-c", example.command.replace("localhost:3000", address)],
                cwd=cwd,
                env=clean_env(),
                capture_output=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
            out, err = (b.decode("utf-8", errors="replace") for b in (done.stdout, done.stderr))
            results[example.id] = Ran(out, err, done.returncode)
    say(request, f"docs: ran {len(results)} commands in {time.monotonic() - started:.1f} s")
    return results


def say(request: pytest.FixtureRequest, line: str) -> None:
    """A line on the terminal, past pytest's capture (where there is a terminal: not on an
    xdist worker)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@pytest.mark.e2e
@pytest.mark.parametrize("example", LIVE, ids=[e.id for e in LIVE])
def test_example_answers_what_the_document_shows(
    example: Example, replayed: dict[str, Ran]
) -> None:
    ran = replayed[example.id]
    assert ran.returncode == 0, f"$ {example.command}\nexit {ran.returncode}: {ran.stderr}"
    try:
        assert_same(example.expected, ran.stdout)
    except AssertionError as differs:
        raise AssertionError(
            f"{differs}\n$ {example.command}\nit printed:\n{ran.stdout}\n"
            f"the document shows:\n{example.expected}"
        ) from None


SHOWN = """HTTP/1.1 200 OK
date: Thu, 03 Dec 2026 08:10:43 GMT
content-length: 78

{"model_version":"abcqomho6gs3yax4","outputs":[{"data":[0.8591498958371253,2]}],"created":"x"} 400
versions: abcqomho6gs3yax4, 6whqjmxo6c6qmax4"""


@pytest.mark.parametrize(
    "printed",
    [
        SHOWN.replace("abcqomho6gs3yax4", "zzzzzzzzzzzz1234").replace("08:10:43", "09:00:00"),
        SHOWN.replace("0.8591498958371253", "0.8592").replace('"x"', '"2027-01-01"'),
        SHOWN.replace(
            '{"model_version":"abcqomho6gs3yax4",', '{"model_version" : "abcqomho6gs3yax4",\n'
        ),
    ],
    ids=["versions-and-date", "float-within-tolerance-and-a-time", "json-layout"],
)
def test_what_may_differ_from_the_document(printed: str) -> None:
    assert_same(SHOWN, printed)


@pytest.mark.parametrize(
    "printed",
    [
        SHOWN.replace("0.8591498958371253", "0.8691498958371253"),
        SHOWN.replace(",2]", ",3]"),
        SHOWN.replace(",2]", ",2.0]").replace(",2.0]", ',"2"]'),
        SHOWN.replace(" 400", " 404"),
        SHOWN.replace('"created":"x"', '"created":"x","id":"1"'),
        SHOWN.replace(',"created":"x"', ""),
        SHOWN.replace("content-length: 78", "content-length: 79"),
        SHOWN.replace("6whqjmxo6c6qmax4", "abcqomho6gs3yax4"),
        SHOWN + "\nmore",
    ],
    ids=[
        "float",
        "int",
        "type",
        "status",
        "extra-key",
        "missing-key",
        "header",
        "same-version",
        "more",
    ],
)
def test_what_may_not_differ_from_the_document(printed: str) -> None:
    with pytest.raises(AssertionError):
        assert_same(SHOWN, printed)


MARKDOWN = """<!-- not run: it needs a model named churn -->

```text
$ curl -s localhost:3000/v2/models/churn
{}
```

```bash
$ curl -s localhost:3000/v2
```

```text
$ python -c 'print(1)'
1
$ curl -s localhost:3000/v2
{"name":"x"}
```
"""


def test_blocks_examples_marks_and_orphans() -> None:
    marked, other, live = blocks(Path("doc.md"), MARKDOWN)
    assert (marked.live, marked.not_run) == (True, "it needs a model named churn")
    assert (other.lang, other.live) == ("bash", False)
    found = [(e.id, e.command, e.expected) for e in live.examples()]
    assert found == [
        ("doc.md:13", "python -c 'print(1)'", "1"),
        ("doc.md:15", "curl -s localhost:3000/v2", '{"name":"x"}'),
    ]
    assert orphans(Path("doc.md"), MARKDOWN) == ["doc.md:9"]


def document_links() -> list[Link]:
    return [link for p in DOCUMENTS for link in links(p.relative_to(ROOT), p.read_text("utf-8"))]


def test_every_relative_link_of_the_documents_resolves() -> None:
    found = document_links()
    relative = [link for link in found if not SCHEME.match(link.target)]
    assert any("#" in link.target for link in relative), "no anchor found: the parser changed"
    wrong = [f"{link.id}: {why}" for link in relative if (why := broken(ROOT, link))]
    assert not wrong, "links that lead nowhere:\n" + "\n".join(wrong)


def test_every_page_of_docs_is_linked_from_the_readme() -> None:
    """The README is the index: a page of docs/ nobody links to is a page nobody finds."""
    readme = ROOT / "README.md"
    linked = {
        (readme.parent / link.target.partition("#")[0]).resolve()
        for link in links(Path("README.md"), readme.read_text("utf-8"))
        if not SCHEME.match(link.target)
    }
    pages = [p for p in DOCUMENTS if p != readme]
    assert pages, "no page in docs/"
    unlinked = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not unlinked, f"add a line to the README's Documentation list for {unlinked}"


def test_the_readme_stays_short() -> None:
    lines = len((ROOT / "README.md").read_text("utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, at most {README_MAX_LINES}: move reference to docs/"
    )


LINKED = """# Guide

## Models, versions, `latest` and `best`

## iris 1\N{MULTIPLICATION SIGN}4

## iris 1\N{MULTIPLICATION SIGN}4

```text
## not a heading [nor a link](missing.md)
```

[ok](#models-versions-latest-and-best) [second](#iris-14-1) [page](other.md#per-model-keys)
[gone](#nowhere) [missing](missing.md) `[code](missing.md)` [web](https://example.org/x)
[up](../../outside.md) [dir](sub/) [anchor in code](sub/code.py#L3) [bad anchor](other.md#nope)
"""


def test_links_anchors_and_why_a_link_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "code.py").write_text("x = 1\n")
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Per-model keys\n")
    (tmp_path / "docs" / "guide.md").write_text(LINKED)
    assert anchors(LINKED) == {"guide", "models-versions-latest-and-best", "iris-14", "iris-14-1"}
    found = links(Path("docs/guide.md"), LINKED)
    assert [link.target for link in found] == [
        "#models-versions-latest-and-best", "#iris-14-1", "other.md#per-model-keys",
        "#nowhere", "missing.md", "https://example.org/x",
        "../../outside.md", "sub/", "sub/code.py#L3", "other.md#nope",
    ]  # fmt: skip
    why = {link.target: broken(tmp_path / "", link) for link in found}
    assert why == {
        "#models-versions-latest-and-best": "",
        "#iris-14-1": "",
        "other.md#per-model-keys": "",
        "#nowhere": "docs/guide.md has no heading #nowhere",
        "missing.md": "missing.md does not exist",
        "https://example.org/x": "",
        "../../outside.md": "../../outside.md is outside the repository",
        "sub/": "",
        "sub/code.py#L3": "",
        "other.md#nope": "docs/other.md has no heading #nope",
    }
