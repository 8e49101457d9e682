"""The command line as a user meets it: --version, no progress-bar updates when the output
is not a terminal (every command), user errors as one line with a non-zero exit, and the
first-run notice."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fwdderiv as fd
from fwdderiv import cli
from fwdderiv.commands import _common

REPO = Path(__file__).resolve().parents[1]

#: A quick invocation of each command (small sizes, offline data). A new command in
#: cli.COMMANDS needs an entry here: test_every_command_has_a_quick_run says so.
QUICK = {
    "reproduce": lambda tmp: ["--samples", "2", "--no-figures", "--output", str(tmp / "rep")],
    "jacobian": lambda tmp: ["--batch", "1", "--fd-examples", "0", "--untrained"],
    "train": lambda tmp: ["--model", "mlp", "--epochs", "1", "--output", str(tmp / "m.npz")],
    "attribute": lambda tmp: ["--untrained", "--batch", "1", "--n-steps", "4", "--nt-samples",
                              "2", "--methods", "saliency,smoothgrad", "--output",
                              str(tmp / "attr")],
    "attack": lambda tmp: ["--untrained", "--batch", "20", "--eps", "0,0.1", "--pgd-steps",
                           "2", "--output", str(tmp / "atk")],
    "check": lambda tmp: _check_files(tmp),
    "robustness": lambda tmp: ["--epochs", "1", "--train-size", "64", "--output",
                               str(tmp / "rob")],
}


def _check_files(tmp):
    """A saved network, inputs and its correct Jacobian, for a quick ``fwdderiv check``."""
    import numpy as np
    net = fd.Sequential([fd.Linear(3, 2), fd.Tanh()])
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    fd.save(net, tmp / "net.npz")
    np.save(tmp / "x.npy", x)
    np.save(tmp / "J.npy", net.jacobian(x))
    return [str(tmp / "net.npz"), "--inputs", str(tmp / "x.npy"), "--jacobian",
            str(tmp / "J.npy")]

#: Signs of a progress bar in captured output: carriage-return redraws, tqdm's rate and
#: bar glyphs, the plain bar's [###...] meter.
BAR = re.compile(r"\r|it/s|ex/s|sample/s|\d+%\|| \[[#.]{8,}\] ")


def _run(argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "fwdderiv", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fwdderiv {fd.__version__}"


def test_every_command_has_a_quick_run():
    missing = [c for c in cli.COMMANDS if c not in QUICK]
    assert not missing, f"add a quick invocation of {missing} to QUICK in tests/test_cli.py"


def test_every_command_has_the_shared_options():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a.choices, dict))
    for name in cli.COMMANDS:
        opts = sub.choices[name]._option_string_actions
        assert "--progress" in opts and "--no-progress" in opts, name
        if "--data-dir" in opts:
            assert "--download" in opts, name


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_no_progress_bar_updates_when_not_a_terminal(command, tmp_path):
    run = _run([command, *QUICK[command](tmp_path)], tmp_path)
    assert run.returncode == 0, run.stderr
    for stream in (run.stdout, run.stderr):
        assert not BAR.search(stream), f"{command} drew a progress bar:\n{stream[:2000]}"


def test_jsma_bar_label_says_what_it_counts(monkeypatch):
    stream = io.StringIO()
    from fwdderiv.attacks import _progress
    monkeypatch.setattr(_progress, "make_bar",
                        lambda *a, **k: fd.progress.make_bar(*a, **k, stream=stream))
    bar = _progress.make_progress(True, 4, "jsma")
    bar.update(2, 2)
    bar.update(2, 3)
    bar.close()
    text = stream.getvalue()
    assert "jsma: 4/4 samples finished, success 75.0% of them" in text


def test_zero_width_terminal_gets_a_usable_width(monkeypatch):
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=None: os.terminal_size((0, 0)))
    assert fd.progress.terminal_columns() == fd.progress.FALLBACK_COLUMNS


def test_train_writes_to_a_default_path_and_says_where(tmp_path):
    """Also the control for the no-bar test: with --progress the bar is drawn."""
    run = _run(["train", "--model", "mlp", "--epochs", "1", "--progress"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert BAR.search(run.stderr)
    path = tmp_path / "mlp-digits-seed0.npz"
    assert path.exists() and f"saved to {path.name}" in run.stdout
    assert fd.load(path).output_shape((1, 8, 8)) == (10,)
    again = _run(["train", "--model", "mlp", "--epochs", "1"], tmp_path)
    assert again.returncode != 0 and "--output" in again.stderr


USER_ERRORS = [
    (["jacobian", "--model", "nope"], "--model"),
    (["jacobian", "--model", "lenet5"], "--model"),
    (["jacobian", "--batch", "0"], "--batch"),
    (["jacobian", "--dataset", "mnist", "--data-dir", "{missing}"], "--download"),
    (["reproduce", "--dataset", "mnist", "--data-dir", "{missing}", "--samples", "1"],
     "--download"),
    (["train", "--dataset", "mnist", "--data-dir", "{missing}"], "--download"),
    (["train", "--output", "model.txt"], "--output"),
]


@pytest.mark.parametrize("argv, option", USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_user_errors_are_one_line_with_a_nonzero_exit(argv, option, tmp_path, capsys,
                                                      monkeypatch):
    argv = [a.replace("{missing}", str(tmp_path / "no-mnist-here")) for a in argv]
    monkeypatch.chdir(tmp_path)
    status = cli.main(argv)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1, out.err
    assert lines[0].startswith(f"fwdderiv {argv[0]}: error: ") and option in lines[0]
    assert "Traceback" not in out.err and "root=" not in out.err and "load_mnist" not in out.err


def test_first_run_notice_only_when_kernels_are_not_compiled(monkeypatch):
    cached, total = _common._kernel_cache_files()
    assert total >= 5                      # finds fwdderiv's cached Numba kernels
    stream = io.StringIO()
    monkeypatch.setattr(_common, "_kernel_cache_files", lambda: (0, total))
    assert _common.first_run_notice(stream) is True
    assert "compiling the Numba kernels" in stream.getvalue()
    stream = io.StringIO()
    monkeypatch.setattr(_common, "_kernel_cache_files", lambda: (total, total))
    assert _common.first_run_notice(stream) is False and stream.getvalue() == ""
