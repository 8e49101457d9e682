"""Smoke runs of ``python -m benchmarks.jacobian`` through its entry point.

Tiny cases, one repeat: they check that the table has the expected rows, that every
peer present agrees with fwdderiv's float64 Jacobian, and that missing peers are
reported as missing. No timing is asserted (benchmarks are not tests).
"""
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import jacobian, peers, report, runner

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path, *argv):
    out = tmp_path / "run.json"
    argv = list(argv) + ["--repeats", "1", "--gemm-size", "256", "--json", str(out)]
    status = jacobian.main(argv)
    return status, json.loads(out.read_text())


def _check_agreement(doc):
    for r in doc["results"] + doc["scaling"]:
        if r["status"] == "ok":
            assert r["agree"], r
            allowed = 0.02 * r["J_size"] if r["method"] == "fd-central" else 0
            assert r["over_tol"] <= allowed, r
            assert r["median_ms"] > 0 and r["gflops"] > 0


def test_every_method_both_dtypes_in_process(tmp_path, capsys):
    status, doc = _run(tmp_path, "--models", "mlp", "--batch", "2",
                       "--dtype", "float32,float64", "--in-process")
    assert status == 0
    rows = [(r["dtype"], r["method"]) for r in doc["results"]]
    assert rows == [(d, m) for d in ("float32", "float64") for m in peers.METHODS]
    have = {f for f in ("torch", "jax") if peers.available(f)}
    for r in doc["results"]:
        need = peers.METHOD_NEEDS[r["method"]]
        assert r["status"] == ("missing" if need and need not in have else "ok"), r
    _check_agreement(doc)
    ratio = {(r["dtype"], r["method"]): r["ratio"] for r in doc["results"]}
    assert ratio[("float32", "fwdderiv-fwd")] == ratio[("float64", "fwdderiv-fwd")] == 1.0
    table = capsys.readouterr().out
    assert sum(line.startswith("mlp ") for line in table.splitlines()) == 2 * len(peers.METHODS)


def test_missing_peers_and_isolated_workers(tmp_path):
    """--without jax marks JAX missing; the workers report peak memory."""
    status, doc = _run(tmp_path, "--models", "mlp", "--batch", "2", "--dtype", "float64",
                       "--methods", "fwdderiv-fwd,torch-jacfwd,jax-jacfwd,jax-jacrev",
                       "--without", "jax")
    assert status == 0
    by = {r["method"]: r for r in doc["results"]}
    assert by["jax-jacfwd"]["status"] == by["jax-jacrev"]["status"] == "missing"
    assert "jax" in by["jax-jacfwd"]["reason"]
    for m in ("fwdderiv-fwd", "torch-jacfwd"):
        assert by[m]["status"] == "ok" and by[m]["agree"]
        assert by[m]["peak_bytes"] >= 0 and "VmHWM" in by[m]["memory_method"]
    assert "fresh worker" in doc["meta"]["memory_note"]
    md = report.render(doc, "markdown")
    assert "| mlp | float64 | 2 | jax-jacfwd |" in md and "missing: jax disabled" in md


def test_without_torch_differences_use_numpy(tmp_path):
    status, doc = _run(tmp_path, "--models", "mlp", "--batch", "1", "--dtype", "float64",
                       "--methods", "fd-central,torch-jacrev", "--without", "torch",
                       "--in-process")
    assert status == 0
    fd, tr = doc["results"]
    assert fd["status"] == "ok" and fd["label"] == "fd-central/numpy" and fd["agree"]
    assert tr["status"] == "missing"


def test_memory_estimate_skips_without_running(tmp_path):
    status, doc = _run(tmp_path, "--models", "lenet5", "--batch", "16", "--dtype", "float64",
                       "--methods", "torch-jacfwd,jax-jacfwd", "--max-peer-memory", "0.01",
                       "--in-process")
    assert status == 0
    assert [r["status"] for r in doc["results"]] == ["skipped", "skipped"]
    assert all("far above --max-peer-memory" in r["reason"] for r in doc["results"])


def test_one_example_probe_skips_large_batches():
    spec = dict(method="torch-jacfwd", model="mlp", batch=64, dtype="float64", repeats=1,
                budget_s=1.0, have=["torch"], limit_bytes=1)
    record, J = runner.measure(spec)
    assert record["status"] == "skipped" and J is None
    assert record["probe_peak_bytes"] > 0 and "B=64" in record["reason"]


def test_scaling_tables_and_markdown_reprint(tmp_path):
    status, doc = _run(tmp_path, "--scaling-only", "--sides", "12", "--depths", "1",
                       "--depth-batch", "2", "--dtype", "float64", "--in-process")
    assert status == 0 and not doc["results"]
    got = {(r["sweep"], r["model"], r["method"]) for r in doc["scaling"]}
    assert got == {(s, m, meth) for s, m in (("side", "smallconv12"), ("depth", "mlp1"))
                   for meth in ("fwdderiv-fwd", "fwdderiv-rev", "torch-jacfwd")}
    _check_agreement(doc)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.jacobian", "--from-json",
                           str(tmp_path / "run.json"), "--format", "markdown"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| side")
             or ln.startswith("| depth")]
    assert len(lines) == 2 and all(ln.count("|") == 13 for ln in lines)
