"""Command outputs are whole or absent: the staged output folder and file
(``fwdderiv.commands._output``), ``reproduce`` interrupted or failing, and
``jacobian --output J.npy`` streaming a Jacobian larger than its memory budget to disk."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.commands import _output, reproduce
from fwdderiv.io import current_umask
from fwdderiv.models.trained import cache_path

REPO = Path(__file__).resolve().parents[2]


def leftovers(folder):
    """Temporary copies left beside outputs."""
    return sorted(p.name for p in folder.iterdir() if _output.PARTIAL in p.name)


# -- the staged folder and file -------------------------------------------------------

def test_a_finished_folder_is_renamed_into_place(tmp_path):
    with _output.output_dir(tmp_path / "a" / "out", last="report.md") as stage:
        assert not (tmp_path / "a" / "out").exists()
        (stage / "results.json").write_text("{}")
        (stage / "report.md").write_text("done")
    assert sorted(os.listdir(tmp_path / "a" / "out")) == ["report.md", "results.json"]
    assert leftovers(tmp_path / "a") == []
    assert (tmp_path / "a" / "out").stat().st_mode & 0o777 == 0o777 & ~current_umask()


@pytest.mark.parametrize("error", [RuntimeError("step failed"), KeyboardInterrupt()])
def test_a_failed_run_leaves_nothing_new(tmp_path, error):
    with pytest.raises(type(error)):
        with _output.output_dir(tmp_path / "new" / "deeper" / "out") as stage:
            (stage / "results.json").write_text("{}")
            raise error
    assert os.listdir(tmp_path) == []           # the parents it made are gone too
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.md").write_text("previous run")
    with pytest.raises(type(error)):
        with _output.output_dir(old, last="report.md") as stage:
            (stage / "report.md").write_text("half")
            raise error
    assert os.listdir(old) == ["report.md"] and (old / "report.md").read_text() == \
        "previous run"
    assert leftovers(tmp_path) == []


def test_sigterm_inside_the_block_cleans_up_as_ctrl_c(tmp_path):
    with pytest.raises(KeyboardInterrupt, match="terminated"):
        with _output.output_dir(tmp_path / "out") as stage:
            (stage / "results.json").write_text("{}")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                                  # interrupted before this ends
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_into_an_existing_folder_the_marker_goes_last(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "shard-00000.npz").write_bytes(b"kept")
    (out / "report.md").write_text("old")
    moved = []
    real = os.replace
    monkeypatch.setattr(_output.os, "replace",
                        lambda a, b: (moved.append((Path(b).name, (out / "report.md")
                                                    .exists())), real(a, b))[1])
    with _output.output_dir(out, last="report.md") as stage:
        for name in ("report.md", "results.json", "samples.npz"):
            (stage / name).write_text("new")
    assert [m[0] for m in moved] == ["results.json", "samples.npz", "report.md"]
    assert not any(present for _, present in moved)      # no old report beside new files
    assert (out / "report.md").read_text() == "new"
    assert (out / "shards" / "shard-00000.npz").read_bytes() == b"kept"
    assert leftovers(tmp_path) == []


def test_copies_left_by_killed_runs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out{_output.PARTIAL}{dead.pid}-x1"
    stale.mkdir()
    (stale / "results.json").write_text("{}")
    alive = tmp_path / f".out{_output.PARTIAL}{os.getppid()}-x2"
    alive.mkdir()
    with _output.output_dir(tmp_path / "out") as stage:
        (stage / "r").write_text("1")
    assert not stale.exists() and alive.exists()


def test_a_file_is_whole_or_absent(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(RuntimeError):
        with _output.output_file(path) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []
    _output.write_text(path, "{}")
    assert path.read_text() == "{}" and os.listdir(tmp_path) == ["r.json"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_zarr_needs_the_zarr_package(tmp_path, monkeypatch):
    """Without the zarr extra a .zarr output is refused with the fix, leaving nothing."""
    import sys
    monkeypatch.setitem(sys.modules, "zarr", None)          # import zarr -> ImportError
    with pytest.raises(ImportError, match="needs the zarr package.*pip install zarr"):
        with _output.array_output(tmp_path / "J.zarr", (2, 3), np.float64):
            pass
    assert os.listdir(tmp_path) == []


def test_blocks_fill_a_npy_file(tmp_path):
    with _output.array_output(tmp_path / "J.npy", (3, 4), np.float32) as J:
        J[0:2, :] = -np.ones((2, 4))
        J[2:3, 1:3] = 2.0
        assert J.max_abs == 2.0 and J[2:3].tolist() == [[0, 2, 2, 0]]
    got = np.load(tmp_path / "J.npy")
    assert got.dtype == np.float32 and got.tolist() == [[-1] * 4, [-1] * 4, [0, 2, 2, 0]]


# -- reproduce -------------------------------------------------------------------------

@pytest.fixture
def cached_digits_model(tmp_path, monkeypatch):
    """A private model cache holding a quickly fitted digits classifier as the
    'pretrained' digits_net."""
    from fwdderiv.datasets import load_dataset
    ds = load_dataset("digits")
    net = fd.Sequential([fd.Flatten(), fd.Linear(64, 10, seed=0), fd.Softmax()])
    fd.training.fit(net, ds.x_train, ds.y_train, epochs=2, progress=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FWDDERIV_CACHE_DIR", str(cache))
    path = cache_path("digits_net", "digits")
    path.parent.mkdir(parents=True)
    fd.save(net, path)
    return cache


def _parse(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="fwdderiv")
    reproduce.add_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(["reproduce", *argv])


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_reproduce_stopped_while_writing_leaves_nothing(tmp_path, cached_digits_model,
                                                        monkeypatch, error):
    """The last step (report.md, after results.json and the samples are written) fails
    or is interrupted: no output folder, not even its parent."""
    out = tmp_path / "runs" / "rep"

    def broken(*args, **kwargs):
        assert not out.exists() and leftovers(out.parent)   # written aside so far
        raise error("the report step stopped")

    monkeypatch.setattr(reproduce, "_report", broken)
    args = _parse(["--samples", "2", "--output", str(out), "--no-progress", "--no-figures"])
    with pytest.raises(error, match="report step"):
        args.run(args)
    assert not (tmp_path / "runs").exists()


def test_reproduce_with_a_bad_model_leaves_no_folder(tmp_path, cached_digits_model, capsys):
    from fwdderiv.cli import main
    bad = fd.Sequential([fd.Flatten(), fd.Linear(64, 3, seed=0)])     # 3 classes, not 10
    fd.save(bad, tmp_path / "bad.npz")
    out = tmp_path / "rep"
    code = main(["reproduce", "--model", str(tmp_path / "bad.npz"), "--samples", "1",
                 "--no-figures", "--output", str(out)])
    assert code != 0 and not out.exists() and leftovers(tmp_path) == []
    assert "10 class outputs" in capsys.readouterr().err


def test_reproduce_reports_the_warm_up_apart(tmp_path, cached_digits_model, capsys):
    out = tmp_path / "rep"
    args = _parse(["--samples", "2", "--output", str(out), "--no-progress", "--no-figures"])
    assert args.run(args) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["warmup_seconds"] > 0 and r["crafting_seconds"] > 0
    text = capsys.readouterr().out
    assert "not counting" in text and "warm-up" in text and "Numba" in text
    assert "not counting" in (out / "report.md").read_text()
    assert sorted(os.listdir(out)) == ["adversarial_samples.npz", "report.md",
                                       "results.json"]


def test_a_terminated_reproduce_leaves_nothing(tmp_path, cached_digits_model):
    """The real command in a subprocess, sent SIGTERM while it crafts (its progress bar
    has started): no output folder, no temporary copy. (Ctrl-C, and SIGTERM while the
    files are written, are the in-process tests above.) --batch-size 1 stretches the
    crafting to about 30 s: with the default batch size this small model's run ends
    about a second after its first bar, and on a busy machine it could finish before
    the signal arrives."""
    out = tmp_path / "rep"
    env = {**os.environ, "FWDDERIV_CACHE_DIR": str(cached_digits_model),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "fwdderiv", "reproduce", "--samples",
                             "300", "--hardness", "--batch-size", "1", "--no-figures",
                             "--progress", "--output", str(out)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(
        lambda: os.read(proc.stdout.fileno(), 4096), b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while b"samples finished" not in b"".join(seen) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, b"".join(seen).decode()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    assert proc.returncode != 0
    assert b"Report:" not in b"".join(seen)
    assert not out.exists() and leftovers(tmp_path) == []


# -- jacobian --output ----------------------------------------------------------------

def _peak_rss(argv, cwd):
    """Run the command line in a subprocess; its exit status and peak resident memory
    (bytes, from wait4's rusage of that child alone)."""
    proc = subprocess.Popen([sys.executable, "-m", "fwdderiv", *argv], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() + proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024, out.decode()


def test_jacobian_output_streams_a_result_larger_than_the_budget(tmp_path):
    """A 128 MiB Jacobian through --output J.npy with --max-memory 16: the file equals
    the in-memory Jacobian, and the process's peak memory grows by about the budget,
    not by the result."""
    net = fd.Sequential([fd.Flatten(), fd.Tanh()])
    fd.save(net, tmp_path / "net.npz")
    x = np.random.default_rng(0).standard_normal((64, 1, 16, 32))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x2.npy", x[:2])
    common = ["jacobian", str(tmp_path / "net.npz"), "--max-memory", "16", "--show", "1",
              "--no-progress"]
    code, small, text = _peak_rss(common + ["--inputs", "x2.npy", "--output", "J2.npy"],
                                  tmp_path)
    assert code == 0, text
    code, big, text = _peak_rss(common + ["--inputs", "x.npy", "--output", "J.npy",
                                          "--json", "r.json"], tmp_path)
    assert code == 0, text
    result = 64 * 512 * 512 * 8
    assert (tmp_path / "J.npy").stat().st_size > result
    grew = big - small
    assert grew < 3 * 16 * 2**20, f"peak memory grew by {grew / 2**20:.0f} MiB"
    J = np.load(tmp_path / "J.npy", mmap_mode="r")
    assert J.shape == (64, 512, 1, 16, 32)
    for n0 in range(0, 64, 16):
        np.testing.assert_array_equal(J[n0:n0 + 16], net.jacobian(x[n0:n0 + 16]))
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["written_to"] == "J.npy" and r["ok"] and r["fwd_rev"]["inputs"] >= 1
    assert "written to J.npy" in text and "warm-up" in text
    assert leftovers(tmp_path) == []


def test_jacobian_prints_one_relative_error_per_line(tmp_path, capsys):
    """Each error line holds one relative error, defined once; a PASS beside errors
    above tolerance says they lie at kinks; every input is shown."""
    from fwdderiv.cli import main
    lin1, lin2 = fd.Linear(3, 4), fd.Linear(4, 2, seed=1)
    x = np.array([[1.0, 0.5, -1.5], [0.2, 0.1, 0.3], [0.5, -0.5, 1.0]])
    lin1.weight = np.array([[1, 2, -1], [2, 0, 1], [-1, 1, 1], [1, 1, 1]]) / 4.0
    lin1.bias = np.array([-(lin1.weight[0] @ x[0]), 3.0, 3.0, 3.0])  # x[0] on a kink
    fd.save(fd.Sequential([lin1, fd.ReLU(), lin2]), tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    assert main(["jacobian", str(tmp_path / "net.npz"), "--inputs",
                 str(tmp_path / "x.npy")]) == 0
    text = capsys.readouterr().out
    for line in text.splitlines():
        assert line.count("relative") <= 1, line
    assert "relative error = max |difference| / max |dF/dx|" in text
    fd_line = next(line for line in text.splitlines() if line.startswith("|fwd-fd|"))
    assert float(fd_line.split()[2]) > 1e-6                 # above tolerance, at a kink
    assert "straddles a kink" in text and "0 unexplained" in text
    assert "PASS" in text and "except at" in text
    assert all(f"image {n}:" in text for n in range(3))
    assert "warm-up" in text and "not in the times below" in text


def test_robustness_warns_when_the_penalty_costs_clean_accuracy(capsys):
    from types import SimpleNamespace
    from fwdderiv.commands.robustness import CLEAN_DROP, _clean_drop_warning
    args = SimpleNamespace(epochs=1)
    assert _clean_drop_warning({"reference": [0.9], "lambda_1": [0.9 - CLEAN_DROP / 2]},
                               args) is None
    assert capsys.readouterr().err == ""
    warning = _clean_drop_warning({"reference": [0.9], "lambda_0.1": [0.89],
                                   "lambda_1": [0.28]}, args)
    err = capsys.readouterr().err
    assert "lambda_1 28.0% (62 points below)" in warning and "--epochs" in warning
    assert "lambda_0.1" not in warning
    assert err.startswith("fwdderiv robustness: warning: ") and err.count("\n") == 1


def test_check_says_why_it_passes(tmp_path, capsys):
    """A Jacobian taking the other one-sided derivative at exact kinks passes, and the
    PASS line says that entries beyond tolerance lie at kinks; --json is written whole."""
    from fwdderiv.cli import main
    rng = np.random.default_rng(0)
    conv, lin = fd.Conv2d(1, 2, 3), fd.Linear(8, 3)
    conv.weight = rng.integers(-2, 3, conv.weight.shape) / 4.0
    conv.bias = np.zeros(2)
    lin.weight = rng.integers(-2, 3, lin.weight.shape) / 4.0
    net = fd.Sequential([conv, fd.ReLU(), fd.MaxPool2d(2), fd.Flatten(), lin])
    x = np.random.default_rng(1).integers(-2, 3, (2, 1, 6, 6)) / 2.0  # exact kinks, ties
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    other = net.jacobian(x + 1e-11 * np.random.default_rng(0).choice([-1.0, 1.0], x.shape))
    np.save(tmp_path / "J.npy", other)
    code = main(["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--jacobian", str(tmp_path / "J.npy"), "--json", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["beyond_tolerance"] > 0 and report["unexplained"] == 0
    for line in text.splitlines():
        assert line.count("relative") <= 1, line
    assert "max |J - reference| / max|J|" in text
    assert "PASS: " in text and f"except {report['kink_explained']} at kinks" in text
    assert leftovers(tmp_path) == []


def test_jacobian_output_to_zarr_equals_the_in_memory_one(tmp_path, capsys):
    """--output J.zarr (the zarr extra): a chunked array written block by block that equals
    the in-memory Jacobian, and net.jacobian(out=) fills a Zarr array directly."""
    import zarr
    from fwdderiv.cli import main
    net = fd.Sequential([fd.Conv2d(1, 2, 3), fd.Tanh(), fd.Flatten(), fd.Linear(2 * 6 * 6, 4)])
    fd.save(net, tmp_path / "net.npz")
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8))
    np.save(tmp_path / "x.npy", x)
    code = main(["jacobian", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "J.zarr"), "--max-memory", "1", "--no-progress"])
    assert code == 0, capsys.readouterr()
    J = net.jacobian(x)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "J.zarr"), mode="r")[:], J)
    z = zarr.open_array(str(tmp_path / "direct.zarr"), mode="w", shape=J.shape,
                        chunks=(2,) + J.shape[1:], dtype=J.dtype)
    assert net.jacobian(x, out=z, max_memory=1 << 14) is z
    np.testing.assert_array_equal(z[:], J)
    assert leftovers(tmp_path) == []
