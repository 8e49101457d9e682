"""``python -m benchmarks.headline``, the command that regenerates the README's speed table:
one tiny run (one pair, one round) gives a row whose Jacobians agree, and the README's
table has the columns the command prints. No timing is asserted."""
import re
from pathlib import Path

from benchmarks import headline

README = Path(__file__).resolve().parents[2] / "README.md"


def test_one_pair_gives_a_row_with_agreeing_jacobians(capsys):
    assert headline.main(["--rounds", "1", "--pairs", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("`python -m benchmarks.headline --rounds 1 --pairs 0`")
    row = out.strip().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["lenet5", "1", "float32", "fwdderiv-fwd vs torch-jacfwd"]
    assert float(cells[4].replace(",", "")) > 0 and float(cells[5].replace(",", "")) > 0
    assert float(cells[7]) < 1e-5                      # both computed the same Jacobian


def test_the_readme_table_is_the_commands():
    text = README.read_text()
    assert headline.HEADER in text
    assert re.search(r"`python -m benchmarks\.headline[^`]*`, 20\d\d-\d\d-\d\d", text)
    rows = text.split(headline.HEADER, 1)[1].strip().splitlines()
    n = next(i for i, r in enumerate(rows) if not r.startswith("|"))
    assert n == len(headline.PAIRS)


def test_bad_arguments_are_usage_errors(capsys):
    for argv in (["--rounds", "0"], ["--pairs", "99"]):
        try:
            headline.main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "--pairs takes row numbers" in capsys.readouterr().err
