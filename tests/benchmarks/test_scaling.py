"""Smoke run of ``python -m benchmarks.scaling`` on the offline digits: the rows are
consistent with their own times and both clusters give the same numbers. No timing is
asserted."""
import json

import numpy as np

from benchmarks import scaling as bench


def test_digits_run_reports_consistent_rows(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    status = bench.main(["--data", "digits", "--jacobian-images", "40", "--jacobian-shard",
                         "10", "--ig-images", "12", "--ig-shard", "3", "--n-steps", "4",
                         "--small", "4", "--rounds", "2", "--no-end-to-end",
                         "--json", str(out)])
    assert status == 0
    rows = json.loads(out.read_text())["rows"]
    for name, images in (("jacobian", 40), ("integrated_gradients", 12)):
        r = rows[name]
        assert r["images"] == images and r["identical"] is True
        assert len(r["seconds_1_worker"]) == len(r["seconds_2_workers"]) == 2
        assert r["median_2_workers"] == float(np.median(r["seconds_2_workers"]))
        assert r["images_per_s_1_worker"] == images / r["median_1_worker"]
        ratios = np.array(r["seconds_1_worker"]) / np.array(r["seconds_2_workers"])
        assert r["speedup_min"] == ratios.min() and r["speedup_max"] == ratios.max()
    overhead = rows["overhead"]
    assert set(overhead["seconds"]) == {"in_process", "running_cluster"}
    assert overhead["median_in_process"] == float(np.median(overhead["seconds"]["in_process"]))
    assert "speed-up (min-max)" in capsys.readouterr().out
