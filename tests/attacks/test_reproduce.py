"""``fwdderiv reproduce`` end to end on a small digits run."""
import argparse
import json
import sys

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.commands import reproduce
from fwdderiv.models.trained import cache_path


def _parse(argv):
    ap = argparse.ArgumentParser(prog="fwdderiv")
    reproduce.add_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(["reproduce", *argv])


@pytest.fixture
def cached_digits_model(tmp_path, monkeypatch, digits_net):
    """A private cache holding the fitted test classifier as the 'pretrained' digits_net
    (the session cache and its real trained model stay untouched)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FWDDERIV_CACHE_DIR", str(cache))
    path = cache_path("digits_net", "digits")
    path.parent.mkdir(parents=True)
    fd.save(digits_net, path)
    return digits_net


def test_small_digits_run_writes_consistent_files(tmp_path, cached_digits_model):
    out = tmp_path / "rep"
    args = _parse(["--samples", "12", "--output", str(out), "--no-progress"])
    assert args.run(args) == 0
    for name in ("report.md", "results.json", "adversarial_grid.png", "saliency_maps.png",
                 "adversarial_samples.npz"):
        assert (out / name).stat().st_size > 0
    for png in ("adversarial_grid.png", "saliency_maps.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((out / "results.json").read_text())
    ps = r["per_sample"]
    n = len(ps["success"])
    assert n == r["n_crafted"] == 12 * 9
    assert r["success_rate"] == pytest.approx(np.mean(ps["success"]))
    changed = np.array(ps["n_changed"])
    ok = np.array(ps["success"])
    assert r["mean_distortion_all"] == pytest.approx(changed.mean() / r["n_features"])
    assert r["mean_distortion_successful"] == pytest.approx(changed[ok].mean() / r["n_features"])
    assert changed.max() <= r["budget_features"] == 9
    count = np.array(r["matrices"]["count"])
    assert count.sum() == n and np.all(np.diag(count) == 0)
    sr = np.array(r["matrices"]["success_rate"], dtype=float)
    assert np.nansum(sr * count) / n == pytest.approx(r["success_rate"])
    assert r["success_curve"]["success_rate"][-1] == pytest.approx(r["success_rate"])
    assert r["paper"]["success_rate"] == 0.97 and r["paper"]["mean_distortion"] == 0.0402
    # The sources are correctly classified test samples, each towards the 9 other classes.
    from fwdderiv.datasets import load_dataset
    ds = load_dataset("digits")
    idx = np.array(ps["test_index"])
    np.testing.assert_array_equal(ds.y_test[idx], ps["source"])
    assert not np.any(np.array(ps["source"]) == np.array(ps["target"]))
    saved = np.load(out / "adversarial_samples.npz")
    pred = cached_digits_model(saved["x_adv"].astype(np.float64)).argmax(1)
    np.testing.assert_array_equal(pred == saved["target"], ok)
    report = (out / "report.md").read_text()
    assert f"{100 * r['success_rate']:.2f}%" in report
    # Digits (64 features) is not a setting the paper reports: no paper column.
    assert not r["paper_comparable"] and "4.02%" not in report and "| paper" not in report
    # The policy, the architecture and the interval of the headline rate are reported.
    assert "Search domain policy: `saturated`" in report and "Softmax" in r["architecture"]
    lo, hi = r["success_rate_wilson95"]
    assert lo <= r["success_rate"] <= hi and f"[{100 * lo:.2f}%, {100 * hi:.2f}%]" in report
    assert r["config"]["softmax_output"] is True and r["config"]["max_iter_algorithm_2"] == 4
    assert "adversarial_grid.png" in report and "pass --hardness" in report
    assert "0.3%, 1.3%" in report and "**not confirmed**" in report


def test_missing_matplotlib_is_a_clear_error(tmp_path, cached_digits_model, monkeypatch,
                                             capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = _parse(["--samples", "2", "--output", str(tmp_path / "x"), "--no-progress"])
    assert args.run(args) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "--no-figures" in err and "fwdderiv[data]" in err
    args = _parse(["--samples", "2", "--output", str(tmp_path / "y"), "--no-progress",
                   "--no-figures"])
    assert args.run(args) == 0
    assert not (tmp_path / "y" / "adversarial_grid.png").exists()
    assert (tmp_path / "y" / "report.md").exists()


def test_help_explains_the_run():
    ap = argparse.ArgumentParser(prog="fwdderiv")
    p = reproduce.add_parser(ap.add_subparsers())
    text = p.format_help()
    for word in ("--data-dir", "--samples", "--output", "Papernot", "adversarial_grid.png",
                 "14.5%", "results.json"):
        assert word in text


def test_source_selection_takes_classes_in_turn():
    y = np.array([0, 0, 1, 2, 1, 0, 2])
    pred = np.array([0, 0, 1, 2, 0, 0, 2])
    np.testing.assert_array_equal(reproduce.select_sources(y, pred, 5, 3), [0, 2, 3, 1, 6])


def test_paper_column_only_for_the_papers_setting():
    cfg = {"theta": 1.0, "upsilon": 0.145, "logits": False, "data": "mnist",
           "model": "lenet5(in_size=28)", "softmax_output": True}
    assert reproduce.paper_comparable(cfg, 784)
    assert reproduce.paper_comparable({**cfg, "model": "lenet_mnist"}, 784)
    assert not reproduce.paper_comparable(cfg, 64)
    assert not reproduce.paper_comparable({**cfg, "theta": -1.0}, 784)
    assert not reproduce.paper_comparable({**cfg, "logits": True}, 784)
    assert not reproduce.paper_comparable({**cfg, "upsilon": 0.2}, 784)
    # Another architecture, a model file, other 784-feature data, no softmax: no column.
    assert not reproduce.paper_comparable({**cfg, "model": "mlp"}, 784)
    assert not reproduce.paper_comparable({**cfg, "model": "/tmp/lenet.onnx"}, 784)
    assert not reproduce.paper_comparable({**cfg, "data": "inputs"}, 784)
    assert not reproduce.paper_comparable({**cfg, "softmax_output": False}, 784)


def _fake_results(paper, policy="saturated"):
    """The results.json fields the report reads, for a hand-made 2-class run."""
    count = np.array([[0, 10], [3, 0]])
    sr = np.array([[np.nan, 0.8], [1.0, np.nan]])
    mats = {"count": count, "success_rate": sr,
            "success_rate_wilson95_low": np.array([[np.nan, 0.49016], [0.43850, np.nan]]),
            "success_rate_wilson95_high": np.array([[np.nan, 0.94331], [1.0, np.nan]]),
            "distortion_successful": np.full((2, 2), 0.03),
            "adversarial_distance": np.full((2, 2), 0.5)}
    r = {"config": {"data": "mnist", "model": "lenet5(in_size=28)", "samples": 13,
                    "targets_per_sample": 1, "theta": 1.0, "upsilon": 0.145,
                    "logits": False, "mode": "forward", "domain_policy": policy,
                    "max_iter_algorithm_2": 56, "softmax_output": True},
         "data_description": "MNIST t10k, images 9000..9999", "n_test": 1000,
         "architecture": "Conv2d(1, 6, 5) -> ReLU() -> Softmax()", "test_accuracy": 0.977,
         "n_features": 784, "budget_features": 113, "n_crafted": 13,
         "success_rate": 11 / 13, "mean_distortion_successful": 0.03,
         "mean_distortion_all": 0.04, "adversarial_distance_mean": 0.5,
         "crafting_seconds": 1.0, "samples_per_second": 13.0, "warmup_seconds": 0.5,
         "paper_comparable": paper, "hardness": None}
    return r, mats


@pytest.mark.parametrize("paper", [True, False])
def test_report_names_policy_architecture_accuracy_and_intervals(paper):
    r, mats = _fake_results(paper)
    text = reproduce._report(r, mats, np.array([0.0, 0.145]), np.array([0.0, 11 / 13]), [])
    # The default policy is named, with how it departs from Algorithm 2.
    assert "`saturated` (the default" in text and "departs from the paper's Algorithm 2" in text
    assert "max_iter = floor(M Upsilon / 2) = 56" in text
    # Architecture, held-out accuracy; the paper's network accuracy is not quoted unchecked.
    assert "Conv2d(1, 6, 5) -> ReLU() -> Softmax()" in text
    assert "accuracy 97.70% on 1000 held-out images" in text
    # 95% Wilson intervals beside the rates: headline (11/13), curve, cells with counts.
    assert "84.62% [57.76%, 95.67%]" in text
    assert "80% [49-94], n=10" in text and "100% [44-100], n=3" in text
    assert ("| paper (MNIST, LeNet) |" in text) == paper and ("97%" in text) == paper
    if paper:
        assert "could not be confirmed here and is not quoted" in text


def test_report_states_the_literal_policy():
    r, mats = _fake_results(False, policy="paper")
    text = reproduce._report(r, mats, np.array([0.145]), np.array([11 / 13]), [])
    assert "`paper`: Algorithm 2 as printed" in text and "= 56" in text
    assert "departs" not in text


def test_hardness_runs_the_grid_and_reports_the_papers_measure(tmp_path, cached_digits_model):
    from fwdderiv.attacks import hardness
    out = tmp_path / "h"
    args = _parse(["--samples", "4", "--output", str(out), "--no-progress", "--hardness",
                   "--hardness-grid", "0.1,0.2,0.3"])
    assert args.run(args) == 0
    r = json.loads((out / "results.json").read_text())
    h = r["hardness"]
    assert h["upsilon"] == [0.1, 0.2, 0.3]
    tau = np.array(h["success_rate"], dtype=float)
    eps = np.array(h["distortion_successful"], dtype=float)
    H = np.array(r["matrices"]["hardness"], dtype=float)
    high = np.array(h["reached_high"], dtype=float)
    # Each cell is the closed trapezoid over the measured runs of that pair; cells below
    # 90% success at every budget are masked and keep their reached rate.
    for s in range(10):
        for t in range(10):
            if np.isfinite(H[s, t]):
                assert H[s, t] == pytest.approx(hardness(tau[:, s, t], eps[:, s, t]), abs=2e-6)
                assert high[s, t] >= 0.9
            elif np.isfinite(high[s, t]):
                assert h["masked"][s][t] and high[s, t] < 0.9
    assert np.isfinite(H).sum() > 5
    assert h["paper_grid"] is False and h["grid_confirmed"] is False
    # A larger budget never lowers the success rate (the budget only stops crafting).
    rates = h["overall_success_rate"]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    assert (out / "hardness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "hardness.png" in report and "not the paper's" in report
    assert "Reached success range per pair" in report


def test_two_dask_workers_give_the_single_process_results(tmp_path, cached_digits_model):
    runs = {}
    for name, extra in (("one", []), ("two", ["--workers", "2", "--shard-sources", "2"])):
        args = _parse(["--samples", "4", "--output", str(tmp_path / name), "--no-progress",
                       "--no-figures", *extra])
        assert args.run(args) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert len(list((tmp_path / "two" / "shards").glob("shard-*.npz"))) == 2
    for r in runs.values():
        for key in ("crafting_seconds", "samples_per_second", "warmup_seconds", "config"):
            r.pop(key)
    assert runs["one"] == runs["two"]


def test_hardness_report_marks_the_grid_unconfirmed_and_masked_cells():
    """The paper's default grid is reported as not confirmed; a masked pair shows its
    reached rate instead of a number, a pair without rows a dash."""
    from fwdderiv.attacks import PAPER_HARDNESS_UPSILONS
    nan = float("nan")
    grid = list(PAPER_HARDNESS_UPSILONS)
    h = {"upsilon": grid, "paper_grid": True, "grid_confirmed": False, "min_success": 0.9,
         "unmasked": [[None, 0.0123], [0.004, None]],
         "reached_low": [[None, 0.5], [0.0, None]],
         "reached_high": [[None, 1.0], [0.4, None]],
         "masked": [[False, False], [True, False]],
         "overall_success_rate": [0.1 * i for i in range(len(grid))],
         "overall_distortion_successful": [nan] + [0.01] * (len(grid) - 1)}
    text = "\n".join(reproduce._hardness_md({"hardness": h}, None))
    assert "**not confirmed**" in text and "0.3%, 1.3%" in text
    assert "| **0** | - | 0.0123 |" in text
    assert "| **1** | masked (40%) | - |" in text
    assert "| **1** | 0-40% | - |" in text and "| **0** | - | 50-100% |" in text
