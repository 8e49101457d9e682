"""``fwdderiv train``: flags, help, output file, and the error for a model that does not fit."""
import argparse

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.commands import train
from fwdderiv.datasets import load_dataset


def parse(argv):
    parser = argparse.ArgumentParser(prog="fwdderiv")
    train.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--dataset", "--data-dir", "--epochs", "--batch-size", "--lr",
                 "--momentum", "--weight-decay", "--optimizer", "--seed", "--output",
                 "--no-progress", "lenet5", "digits_net", "examples:"):
        assert flag in out


def test_trains_saves_and_prints_held_out_accuracy(tmp_path, capsys):
    out_path = tmp_path / "net.npz"
    args = parse(["--model", "mlp", "--dataset", "digits", "--epochs", "2",
                  "--batch-size", "64", "--lr", "0.1", "--optimizer", "sgd", "--seed", "1",
                  "--output", str(out_path), "--no-progress"])
    assert args.run is train.run
    assert train.run(args) == 0
    out = capsys.readouterr()
    assert "held-out accuracy" in out.out and f"saved to {out_path}" in out.out
    assert "lr=0.1" in out.err and "epochs=2" in out.err
    accuracy = float(out.out.split("held-out accuracy ")[1].split()[0])
    ds = load_dataset("digits")
    net = fd.load(out_path)
    assert isinstance(net[-1], fd.Softmax)
    assert accuracy == pytest.approx(np.mean(net(ds.x_test).argmax(1) == ds.y_test), abs=1e-4)
    assert accuracy > 0.5


def test_model_that_does_not_fit_the_images_is_a_clear_error(capsys):
    assert train.run(parse(["--model", "lenet5", "--dataset", "digits"])) == 2
    err = capsys.readouterr().err
    assert "model 'lenet5' does not take images of shape (1, 8, 8)" in err
    assert "digits_net" in err and "pick a --model" in err


def test_output_must_be_npz(capsys):
    assert train.run(parse(["--output", "model.pkl"])) == 2
    assert "must be a .npz path" in capsys.readouterr().err


def test_wired_into_the_fwdderiv_command(capsys):
    from fwdderiv.cli import main

    assert main(["train", "--model", "mnist_convnet", "--dataset", "digits"]) == 2
    assert "model 'mnist_convnet' does not take images" in capsys.readouterr().err
