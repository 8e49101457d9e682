"""Smoke run of ``python -m benchmarks.jsma`` on the offline digits: the numbers it
reports are consistent with the attack's own result. No timing is asserted."""
import json

import numpy as np

from benchmarks import jsma as bench


def test_digits_run_reports_consistent_rows(tmp_path, capsys):
    out = tmp_path / "jsma.json"
    status = bench.main(["--data", "digits", "--samples", "2", "--modes", "forward,vjp",
                         "--repeats", "2", "--json", str(out)])
    assert status == 0
    doc = json.loads(out.read_text())
    assert doc["pairs"] == 18
    fwd, vjp = doc["rows"]["fwdderiv jsma (forward)"], doc["rows"]["fwdderiv jsma (vjp)"]
    for row in (fwd, vjp):
        assert len(row["times"]) == 2 and row["seconds"] == float(np.median(row["times"]))
        assert row["samples_per_s"] == 18 / row["seconds"]
        assert 0 <= row["success_rate"] <= 1
        assert row["max_changed_features"] <= row["budget_features"]
    # the two modes differentiate the same function: same pairs, same outcome
    assert fwd["success_rate"] == vjp["success_rate"]
    assert fwd["distortion_all"] == vjp["distortion_all"]
    assert "samples/s" in capsys.readouterr().out
