"""``fwdderiv attribute`` and ``fwdderiv attack`` on small inputs: the files they write
hold the numbers the library computes."""
import json

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attribution import IntegratedGradients, Saliency
from fwdderiv.cli import build_parser
from fwdderiv.datasets import load_dataset
from fwdderiv.models.trained import build_model


def main(argv):
    """The command as ``fwdderiv`` runs it, without ``cli.main``'s process-wide tuning
    (which would change Numba's settings for the rest of the test session)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def test_attribute_writes_the_figure_and_every_class(tmp_path, capsys):
    out = tmp_path / "attr"
    status = main(["attribute", "--untrained", "--batch", "2", "--n-steps", "8",
                   "--nt-samples", "2", "--classes", "0,3", "--output", str(out)])
    assert status == 0
    assert (out / "attributions.png").stat().st_size > 1000
    saved = np.load(out / "attributions.npz")
    net = build_model("digits_net", (1, 8, 8), seed=0)
    x = load_dataset("digits").x_test[:2]
    np.testing.assert_array_equal(saved["x"], x)
    assert saved["occlusion"].shape == (2, 10, 1, 8, 8)
    np.testing.assert_allclose(saved["saliency"], Saliency(net).attribute(x, target="all"),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(saved["integrated_gradients"][:, 3],
                               IntegratedGradients(net).attribute(x, target=3, n_steps=8),
                               rtol=1e-6, atol=1e-9)
    record = json.loads((out / "attributions.json").read_text())
    assert set(record["methods"]) == {"saliency", "input_x_gradient", "integrated_gradients",
                                      "occlusion", "smoothgrad"}
    assert "4 rows" in capsys.readouterr().out


def test_attack_curve_starts_at_the_clean_accuracy_and_falls(tmp_path):
    net = build_model("digits_net", (1, 8, 8), seed=1)
    ds = load_dataset("digits")
    fd.training.fit(net, ds.x_train, ds.y_train, epochs=3, progress=False)
    weights = tmp_path / "net.npz"
    fd.save(net, weights)
    out = tmp_path / "attack"
    status = main(["attack", "--weights", str(weights), "--batch", "60", "--eps", "0,0.1,0.3",
                   "--pgd-steps", "3", "--output", str(out)])
    assert status == 0
    rec = json.loads((out / "accuracy_vs_eps.json").read_text())
    clean = float((net(ds.x_test[:60]).argmax(1) == ds.y_test[:60]).mean())
    assert rec["clean_accuracy"] == clean and clean > 0.6
    for attack in ("fgsm", "pgd"):
        acc = rec["accuracy"][attack]
        assert acc[0] == clean and acc[2] < acc[0]
    assert rec["accuracy"]["pgd"][2] <= rec["accuracy"]["fgsm"][2] + 0.05
    for name in ("accuracy_vs_eps.png", "fgsm_example.png"):
        assert (out / name).stat().st_size > 1000


@pytest.mark.parametrize("argv, err, match", [
    (["attack", "--untrained", "--eps", "-0.1"], ValueError, "--eps expected numbers >= 0"),
    (["attack", "--untrained", "--attacks", "cw"], ValueError, "--attacks expected names"),
    (["attribute", "--untrained", "--methods", "lrp"], ValueError, "--methods expected names"),
    (["attribute", "--untrained", "--batch", "1", "--classes", "12"], ValueError,
     r"\[0, 10\)"),
    (["attack", "--weights", "missing.npz"], FileNotFoundError, "does not exist"),
])
def test_bad_options(argv, err, match, tmp_path):
    # cli.main turns these into "fwdderiv COMMAND: error: ..." and exit status 1
    with pytest.raises(err, match=match):
        main(argv + ["--output", str(tmp_path / "o")])
