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


@pytest.mark.parametrize("argv, match", [
    (["attack", "--untrained", "--eps", "-0.1"], "argument --eps: expected finite numbers >= 0"),
    (["attack", "--untrained", "--eps", "abc"], "argument --eps: expected comma-separated"),
    (["attack", "--untrained", "--attacks", "cw"], "argument --attacks: expected names"),
    (["attribute", "--untrained", "--methods", "lrp"], "argument --methods: expected names"),
    (["attack", "--untrained", "--batch", "0"], "argument --batch: expected an integer >= 1"),
])
def test_bad_option_values_are_usage_errors(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"usage: fwdderiv {argv[0]}" in err and match in err


@pytest.mark.parametrize("argv, err, match", [
    (["attribute", "--untrained", "--batch", "1", "--classes", "12"], ValueError,
     r"\[0, 10\)"),
    (["attack", "--weights", "missing.npz"], FileNotFoundError, "does not exist"),
])
def test_bad_options(argv, err, match, tmp_path):
    # cli.main turns these into "fwdderiv COMMAND: error: ..." and exit status 2
    with pytest.raises(err, match=match):
        main(argv + ["--output", str(tmp_path / "o")])


@pytest.mark.parametrize("command, step", [("attribute", "plot"), ("attack", "plot_curve")])
def test_a_command_stopped_while_writing_leaves_no_folder(command, step, tmp_path,
                                                          monkeypatch):
    """The figure step fails after the numbers are computed: no output folder, and no
    temporary copy beside it."""
    import importlib
    module = importlib.import_module(f"fwdderiv.commands.{command}")

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, step, broken)
    out = tmp_path / "out"
    argv = [command, "--untrained", "--batch", "2", "--output", str(out)]
    argv += ["--methods", "saliency"] if command == "attribute" else ["--eps", "0,0.1"]
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert list(tmp_path.iterdir()) == []
