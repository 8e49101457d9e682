"""``fwdderiv robustness`` run tiny (digits, 1 epoch): files, keys, and numbers that agree
with the saved networks."""
import json

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.cli import main
from fwdderiv.commands.robustness import NOISE, add_noise
from fwdderiv.regularization import jacobian_norm
from fwdderiv.training import evaluate


def test_tiny_run_writes_consistent_results(tmp_path, capsys):
    """One reference and two lambdas in one run: one file per network, one curve each,
    numbers that agree with the saved networks, the input layer subtracting the mean
    training image."""
    out = tmp_path / "rob"
    assert main(["robustness", "--epochs", "1", "--lambda", "0.01,0.1", "--output", str(out),
                 "--no-progress"]) == 0
    names = ("reference", "lambda_0.01", "lambda_0.1")
    for name in ("robustness.json", "robustness.md", "robustness.png", "example.png") + tuple(
            f"{n}.npz" for n in names):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "robustness.json").read_text())
    assert res["noise"] == NOISE and len(NOISE) == 11 and NOISE[-1] == 0.5
    assert list(res["accuracy"]) == list(names)
    assert res["lambda"] == {"reference": 0.0, "lambda_0.01": 0.01, "lambda_0.1": 0.1}
    ds = fd.datasets.load_dataset("digits")
    nets = {k: fd.load(str(out / f"{k}.npz")) for k in names}
    for k, net in nets.items():
        assert len(res["accuracy"][k]) == 11
        # the input layer subtracts the mean training image
        assert isinstance(net[0], fd.Normalize)
        np.testing.assert_allclose(net[0].mean, ds.x_train.mean(axis=0), rtol=1e-6)
        # noise 0 is the clean held-out accuracy; the norm is the mean exact norm
        assert res["accuracy"][k][0] == pytest.approx(evaluate(net, ds.x_test, ds.y_test))
        assert res["jacobian_norm"][k] == pytest.approx(
            float(jacobian_norm(net, ds.x_test).mean()), rel=1e-5)
    # the penalty lowered the Jacobian norm, the stronger one more; same seed, so the
    # networks differ only by it
    norm = res["jacobian_norm"]
    assert norm["lambda_0.1"] < norm["lambda_0.01"] < 0.5 * norm["reference"]
    table = (out / "robustness.md").read_text()
    assert "| 0.50 |" in table and "| noise | reference | lambda_0.01 | lambda_0.1 |" in table
    assert set(res["example"]) >= {"label", "reference_clean", "lambda_0.1_noisy"}


def test_without_the_mean_image_the_network_reads_raw_pixels(tmp_path):
    out = tmp_path / "raw"
    assert main(["robustness", "--epochs", "1", "--lambda", "0.1", "--input-mean", "none",
                 "--train-size", "64", "--output", str(out), "--no-progress"]) == 0
    net = fd.load(str(out / "lambda_0.1.npz"))
    assert isinstance(net[0], fd.Conv2d)
    assert json.loads((out / "robustness.json").read_text())["input_mean"] == "none"


def test_noise_replaces_the_given_share_of_pixels():
    x = np.full((200, 1, 8, 8), 2.0, np.float32)       # outside [0, 1]: noise is visible
    for share in (0.0, 0.15, 0.5):
        xn = add_noise(x, share, np.random.default_rng(0))
        assert xn.dtype == x.dtype
        assert np.mean(xn != 2.0) == pytest.approx(share, abs=0.01)
        assert np.all((xn == 2.0) | ((xn >= 0) & (xn <= 1)))


def test_bad_lambda_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:          # a usage error: argparse's status 2
        main(["robustness", "--lambda", "-1", "--output", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fwdderiv robustness" in err and "argument --lambda" in err and ">= 0" in err
    with pytest.raises(SystemExit):
        main(["robustness", "--lambda", "0.1,0.1", "--output", str(tmp_path)])
    assert "repeats a value" in capsys.readouterr().err


def test_two_workers_train_the_same_networks(tmp_path):
    """--workers 2 trains each network as one Dask task: the same weights, accuracies
    and norms as the loop in one process, to the last bit."""
    runs = {}
    for name, extra in (("local", []), ("cluster", ["--workers", "2"])):
        out = tmp_path / name
        assert main(["robustness", "--epochs", "1", "--lambda", "0.1", "--train-size", "200",
                     "--output", str(out), "--no-progress", *extra]) == 0
        runs[name] = out
    a, b = (json.loads((runs[k] / "robustness.json").read_text()) for k in ("local", "cluster"))
    assert a["accuracy"] == b["accuracy"] and a["jacobian_norm"] == b["jacobian_norm"]
    for net in ("reference", "lambda_0.1"):
        one, two = (fd.load(str(runs[k] / f"{net}.npz")) for k in ("local", "cluster"))
        for la, lb in zip(one, two):
            for key in {**la.params, **la.buffers}:
                np.testing.assert_array_equal(getattr(la, key), getattr(lb, key))


def test_image_size_belongs_to_the_folder_data_set(tmp_path, capsys):
    assert main(["robustness", "--image-size", "16,16", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and "--dataset folder" in err and "drop" in err
