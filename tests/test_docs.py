"""Every ```python block of the guide pages runs, page by page, in a fresh folder.

The blocks of one page share a namespace, in order, like a session that
follows the page; an ``assert`` in a block is a claim of the docs that this
test checks. ``mkdocs.yml`` may only name pages that exist.
"""
import gc
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", DOCS / "dbm.md", DOCS / "documents.md",
         *sorted((DOCS / "concepts").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)


def blocks(page: pathlib.Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_guide_pages_exist():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "dbm.md", "concepts/snapshots.md", "concepts/versions.md",
            "concepts/branches.md", "concepts/retention.md", "concepts/durability.md",
            "concepts/multiprocess.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_python_examples_run(page, tmp_path, monkeypatch):
    found = blocks(page)
    assert found, f"{page.name} has no python example"
    monkeypatch.chdir(tmp_path)
    # a process an example starts imports this checkout's cowdb too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    namespace = {"__name__": "__docs__"}
    try:
        for line, code in found:  # padded, so a traceback names the line of the page
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
    finally:
        for value in namespace.values():      # close what a page left open
            close = getattr(value, "close", None)
            if callable(close) and type(value).__module__.startswith("cowdb"):
                close()
        namespace.clear()
        gc.collect()


def test_mkdocs_nav_names_existing_pages():
    config = (ROOT / "mkdocs.yml").read_text()
    named = re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", config, re.M)
    assert "index.md" in named and len(named) >= 10
    for name in named:
        assert (DOCS / name).is_file(), f"mkdocs.yml names {name}, which does not exist"
    for page in PAGES:                       # every guide page is reachable from the nav
        assert page.relative_to(DOCS).as_posix() in named


def test_the_readme_examples_run_in_order(tmp_path, monkeypatch):
    """The README's Python blocks, run one after the other in a fresh folder."""
    import re
    from pathlib import Path
    readme = Path(__file__).resolve().parent.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(readme), "exec"), namespace)
    assert (tmp_path / "data.cow").exists()
