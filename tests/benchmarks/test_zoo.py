"""Smoke run of ``python -m benchmarks.zoo`` on one small architecture, one round: the
reverse pair runs and both Jacobians agree, the forward pair is skipped with the peer's
memory estimate when that is above the limit, and the table has the rows. No timing is
asserted (benchmarks are not tests)."""
import json

import numpy as np

from benchmarks import zoo


def test_one_model_one_round(tmp_path, capsys):
    out = tmp_path / "zoo.json"
    # ShuffleNetV2 at batch 1: vmap(jacfwd) is estimated at about 60 MiB, vmap(jacrev)
    # at about 1 MiB; a 20 MiB limit runs the reverse pair only.
    status = zoo.main(["--models", "shufflenetv2", "--rounds", "1",
                       "--max-peer-memory", str(20 / 1024), "--json", str(out)])
    assert status == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("shufflenetv2", "reverse"),
                                                        ("shufflenetv2", "forward")]
    rev, fwd = rows
    assert rev["status"] == "ok" and rev["max_rel_diff"] < 1e-4
    assert len(rev["fwdderiv_s"]) == len(rev["peer_s"]) == 1
    assert rev["ratio_median"] == rev["peer_s"][0] / rev["fwdderiv_s"][0]
    assert rev["peer_estimate_bytes"] < 20 * 2**20 < fwd["peer_estimate_bytes"]
    assert fwd["status"].startswith("skipped: torch-jacfwd needs about")
    table = capsys.readouterr().out
    lines = [ln for ln in table.splitlines() if ln.startswith("| shufflenetv2 |")]
    assert len(lines) == 2 and "skipped" in lines[1]
    assert np.isfinite(rev["fwdderiv_ms"]) and rev["fwdderiv_ms"] > 0


def test_a_model_that_does_not_import_gets_a_row(monkeypatch, tmp_path, capsys):
    def broken(num_classes=10, seed=0):
        raise ValueError("no such layer")
    monkeypatch.setitem(zoo.architectures(), "broken", (broken, (3, 4, 4)))
    assert zoo.main(["--models", "broken", "--rounds", "1"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| broken |")]
    assert len(row) == 1 and "import failed: ValueError: no such layer" in row[0]
