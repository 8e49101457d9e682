"""The python code blocks of the attribution and attack pages run as written."""
import re
from pathlib import Path

import matplotlib
import pytest

PAGES = Path(__file__).resolve().parents[1] / "docs" / "pages"


@pytest.mark.parametrize("page", ["attribution.md", "gradients-and-attacks.md"])
def test_python_blocks_run(page):
    matplotlib.use("Agg")
    text = (PAGES / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace = {}
    for block in blocks:                      # one namespace: later blocks use earlier names
        exec(compile(block, f"{page} block", "exec"), namespace)
