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
    out = tmp_path / "rob"
    assert main(["robustness", "--epochs", "1", "--lambda", "0.01", "--output", str(out),
                 "--no-progress"]) == 0
    for name in ("robustness.json", "robustness.md", "robustness.png", "example.png",
                 "reference.npz", "jacobian_reg.npz"):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "robustness.json").read_text())
    assert res["noise"] == NOISE and len(NOISE) == 11 and NOISE[-1] == 0.5
    ds = fd.datasets.load_dataset("digits")
    nets = {k: fd.load(str(out / f"{k}.npz")) for k in ("reference", "jacobian_reg")}
    for k, net in nets.items():
        assert len(res["accuracy"][k]) == 11
        # noise 0 is the clean held-out accuracy; the norm is the mean exact norm
        assert res["accuracy"][k][0] == pytest.approx(evaluate(net, ds.x_test, ds.y_test))
        assert res["jacobian_norm"][k] == pytest.approx(
            float(jacobian_norm(net, ds.x_test).mean()), rel=1e-5)
    # the penalty lowered the Jacobian norm; same seed, so the two differ only by it
    assert res["jacobian_norm"]["jacobian_reg"] < 0.5 * res["jacobian_norm"]["reference"]
    assert "| 0.50 |" in (out / "robustness.md").read_text()
    assert set(res["example"]) >= {"label", "reference_clean", "jacobian_reg_noisy"}


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
