"""One convention for every command: a subcommand's error prints that subcommand's usage,
exit status 2 for every usage error and 1 for a failed check, help text on every option,
and ``--dataset`` choosing the data set while ``--data-dir`` only says where MNIST is."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv import cli

REPO = Path(__file__).resolve().parents[2]


def subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def status(argv, capsys):
    """(exit status, stderr) of ``fwdderiv argv`` run in-process; argparse's errors exit
    through SystemExit, the commands' own return their status."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_a_subcommand_error_prints_that_subcommands_usage():
    run = subprocess.run([sys.executable, "-m", "fwdderiv", "jacobian", "--bogus"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2
    assert run.stderr.startswith("usage: fwdderiv jacobian ")
    assert "fwdderiv jacobian: error: unrecognized arguments: --bogus" in run.stderr


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_subcommand_shows_its_own_usage_on_an_unknown_option(command, capsys):
    required = ["m.npz", "--inputs", "x.npy"] if command == "check" else []
    code, err = status([command, *required, "--bogus"], capsys)
    assert code == 2 and err.startswith(f"usage: fwdderiv {command} ")
    assert f"fwdderiv {command}: error: unrecognized arguments: --bogus" in err


def test_every_option_has_help_text():
    parser, commands = subparsers()
    missing = [f"fwdderiv {name} {'/'.join(a.option_strings) or a.dest}"
               for name, sub in [("", parser), *commands.items()]
               for a in sub._actions
               if not isinstance(a, argparse._SubParsersAction)
               and (not a.help or a.help == argparse.SUPPRESS)]
    assert not missing, f"options without help text: {missing}"


BAD_VALUES = [
    ["attack", "--eps", "abc"], ["attack", "--pgd-steps", "0"], ["attack", "--batch", "0"],
    ["attribute", "--methods", "lrp"], ["attribute", "--n-steps", "-1"],
    ["reproduce", "--samples", "0"], ["reproduce", "--upsilon", "2"],
    ["jacobian", "--batch", "0"], ["jacobian", "--top", "0"],
    ["train", "--epochs", "0"], ["train", "--threads", "-1"],
    ["robustness", "--epochs", "0"], ["robustness", "--lambda", "-1"],
    ["check", "net.npz"],                              # no such model file
    ["jacobian", "--dataset", "cifar"],
]


@pytest.mark.parametrize("argv", BAD_VALUES, ids=" ".join)
def test_every_usage_error_exits_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = status(argv, capsys)
    assert code == 2, err
    assert f"fwdderiv {argv[0]}: error: " in err and "Traceback" not in err


def test_a_failed_check_exits_1(tmp_path, capsys):
    net = fd.Sequential([fd.Linear(3, 2), fd.Tanh()])
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    J = net.jacobian(x)
    J[0, 0, 0] += 1e-3
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "J.npy", J)
    code = cli.main(["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                     "--jacobian", str(tmp_path / "J.npy")])
    assert code == 1 and "FAIL" in capsys.readouterr().out


def _reading_data():
    _, commands = subparsers()
    return [c for c in cli.COMMANDS if "--data-dir" in commands[c]._option_string_actions]


def test_every_command_reads_a_data_set():
    assert set(_reading_data()) == set(cli.COMMANDS)     # check: when no --inputs is given


@pytest.mark.parametrize("command", _reading_data())
def test_data_dir_means_the_same_everywhere(command, capsys):
    """``--dataset`` chooses; ``--data-dir`` alone means MNIST, with a note; the digits
    with ``--data-dir`` is a usage error."""
    _, commands = subparsers()
    sub = commands[command]
    base = ["m.npz"] if command == "check" else []
    args = sub.parse_args(base)
    assert args.dataset == "digits" and capsys.readouterr().err == ""
    args = sub.parse_args(base + ["--data-dir", "somewhere"])
    assert args.dataset == "mnist" and str(args.data_dir) == "somewhere"
    assert "note: --data-dir without --dataset: using --dataset mnist" in capsys.readouterr().err
    args = sub.parse_args(base + ["--dataset", "mnist"])
    assert args.dataset == "mnist" and args.data_dir is None
    with pytest.raises(SystemExit) as exc:
        sub.parse_args(base + ["--dataset", "digits", "--data-dir", "somewhere"])
    assert exc.value.code == 2
    assert "--data-dir applies to --dataset mnist" in capsys.readouterr().err


def test_dataset_mnist_reads_the_default_folder(tmp_path, capsys, monkeypatch):
    """``--dataset mnist`` without ``--data-dir`` looks in the default data folder."""
    monkeypatch.setenv("FWDDERIV_DATA_DIR", str(tmp_path / "empty"))
    code, err = status(["attack", "--dataset", "mnist", "--untrained", "--batch", "1"], capsys)
    assert code == 2 and "no MNIST files" in err and "the default data folder" in err


def test_dataset_mnist_runs_on_mnist(mnist_dir, tmp_path, capsys):
    out = tmp_path / "atk"
    assert cli.main(["attack", "--dataset", "mnist", "--data-dir", str(mnist_dir),
                     "--untrained", "--batch", "4", "--eps", "0", "--attacks", "fgsm",
                     "--output", str(out)]) == 0
    assert "MNIST" in capsys.readouterr().out


def test_reproduction_folder_is_ignored_by_git():
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "/reproduction/" in lines or "reproduction/" in lines
