"""Every python code block of README.md and docs/pages/*.md runs as written.

Blocks run page by page, in the order they appear, each page in a namespace of its own
(a block may use what an earlier block of the same page defined, never another page's),
in a temporary working directory. Pages are found by globbing, so a new page is covered
without editing this file. MNIST comes from ``FWDDERIV_DATA_DIR``, pointed at the shared
test set, as a user points it at their own copy.
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs" / "pages").rglob("*.md"))

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


def code_blocks(text):
    """Yield ``(line, language, code)`` for each fenced block of a Markdown text.

    ``line`` is the 1-based line of the opening fence; ``language`` the first word of the
    info string (``python``, ``{.python}`` and ``py`` all give ``python``); the code is
    dedented by the fence's indentation (blocks inside list items).
    """
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip().strip("{}").lstrip(".")
        language = info.split()[0].lower() if info else ""
        language = {"py": "python", "python3": "python"}.get(language, language)
        body = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and set(lines[j].strip()) == {fence[0]}):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        yield i + 1, language, "\n".join(body) + "\n"
        i = j + 1


def test_code_blocks_are_found():
    """The extractor sees the blocks (a broken regex would make every page pass)."""
    text = "a\n\n```python\nx = 1\n```\n\n- item\n\n    ```py\n    y = x + 1\n    ```\n"
    assert list(code_blocks(text)) == [(3, "python", "x = 1\n"), (9, "python", "y = x + 1\n")]
    counts = {p.name: sum(lang == "python" for _, lang, _ in code_blocks(p.read_text()))
              for p in PAGES}
    assert counts["README.md"] >= 1 and counts["index.md"] >= 1, counts


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_page_code_blocks_run(page, tmp_path, monkeypatch, mnist_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FWDDERIV_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    name = page.relative_to(REPO).as_posix()
    for line, language, code in code_blocks(page.read_text()):
        if language != "python":
            continue
        try:
            exec(compile(code, f"{name}:{line}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"{name}, python block at line {line} failed: "
                        f"{type(err).__name__}: {err}\n{code}")
