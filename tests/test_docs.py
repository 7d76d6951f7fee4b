"""The README and the docs site say only what holds: sizes, links, and code that runs or says it does not."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
INCLUDE = re.compile(r'^--8<-- "([^"]+)"\n$')


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 12_000
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:5] == [
        "## Install",
        "## Quickstart",
        "## A FastAPI app",
        "## Deploys: migrations",
        "## URLs",
    ]
    assert headings[-1] == "## Development"
    assert (
        "pip install . && python -m workflow_db.migrate" in readme
    )  # the two commands, as .ci/run runs them
    assert "pip install -q tox\ntox\n" in readme


def test_every_python_block_in_the_docs_runs_or_is_marked_a_fragment() -> None:
    """A block is an example file included whole (run by tests/test_examples.py), or marked on purpose."""
    tested = (ROOT / "tests" / "test_examples.py").read_text(encoding="utf-8")
    unmarked = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
        for number, line in enumerate(lines):
            if line != "```python\n":
                continue
            body = "".join(lines[number + 1 : lines.index("```\n", number + 1)])
            included = INCLUDE.match(body)
            if included:
                example = ROOT / included.group(1)
                assert example.is_file() and example.parent.name == "examples", included.group(1)
                assert example.name in tested, f"{example.name} is included in {page.name} but run by no test"
            elif not lines[number - 1].startswith("<!-- fragment"):
                unmarked.append(f"{page.name}:{number + 1}")
    assert unmarked == []


def test_every_relative_link_leads_to_a_file() -> None:
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert missing == []
