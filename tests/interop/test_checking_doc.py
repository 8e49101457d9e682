"""The page docs/pages/checking.md runs as written (its python blocks, in order)."""
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "pages" / "checking.md"


def test_checking_page_code_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page writes lenet5.onnx
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace = {}
    exec(compile("\n".join(blocks), str(PAGE), "exec"), namespace)
    out = capsys.readouterr().out
    assert "Sequential" in out and "aten.sin" in out
    assert namespace["J"].shape == (4, 10, 1, 32, 32)
