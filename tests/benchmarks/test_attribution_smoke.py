"""Smoke run of ``python -m benchmarks.attribution`` on the digits: the JSON rows are
consistent with the timings and both libraries agree. No timing is asserted."""
import json

import numpy as np

from benchmarks import attribution as bench


def test_digits_run_reports_consistent_rows(tmp_path, capsys):
    out, png = tmp_path / "attr.json", tmp_path / "attr.png"
    status = bench.main(["--data", "digits", "--batch", "3", "--n-steps", "4",
                         "--dtype", "float64", "--fgsm-images", "20", "--fgsm-batch", "8",
                         "--repeats", "2", "--json", str(out), "--plot", str(png)])
    assert status == 0
    rows = json.loads(out.read_text())["rows"]
    ig, fgsm = rows["ig-all"], rows["fgsm"]
    for r in (ig, fgsm):
        assert len(r["fwdderiv_s"]) == len(r["peer_s"]) == 2
        assert r["fwdderiv_median_s"] == float(np.median(r["fwdderiv_s"]))
        ratios = np.array(r["peer_s"]) / np.array(r["fwdderiv_s"])
        assert r["ratio_min"] == ratios.min() and r["ratio_max"] == ratios.max()
    assert ig["shape"] == [3, 10, 1, 8, 8]
    assert ig["max_abs_diff"] < 1e-9 * ig["max_abs"]          # float64: Captum's numbers
    assert fgsm["fraction_differing"] < 0.01
    assert fgsm["fwdderiv_images_per_s"] == 20 / fgsm["fwdderiv_median_s"]
    assert png.stat().st_size > 1000
    assert "peer / fwdderiv" in capsys.readouterr().out
