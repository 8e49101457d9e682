"""``python -m benchmarks.walkthrough`` end to end on tiny Fashion-MNIST IDX files the test
writes (1 epoch, a few dozen images): the figures are written, the numbers of its JSON are
consistent with each other and with the files, its model is the one ``fwdderiv train``
makes, and a second run reuses the cached model."""
import json

import numpy as np
import pytest
from PIL import Image

import fwdderiv as fd
from benchmarks import walkthrough
from fwdderiv import cli
from fwdderiv.attribution import InputXGradient
from fwdderiv.datasets import FASHION_MNIST_CLASSES, load_dataset

from ..datasets.conftest import make_mnist_files

ARGS = ["--dataset", "fashion-mnist", "--epochs", "1", "--frames", "4", "--eps", "0,0.05,0.2",
        "--attack-images", "24", "--images", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("walkthrough")
    data, out = root / "fashion", root / "out"
    make_mnist_files(data, split="train", n=48, seed=1)
    make_mnist_files(data, split="test", n=24, seed=2)
    assert walkthrough.main([*ARGS, "--data-dir", str(data), "--output", str(out)]) == 0
    record = json.loads((out / "walkthrough.json").read_text())
    return data, out, record


def test_files_and_class_names(run):
    data, out, record = run
    for name in record["files"]:
        assert (out / name).stat().st_size > 1000, name
    with Image.open(out / "training_attributions.gif") as gif:
        assert gif.n_frames == len(record["training"]["recorded_steps"])
    assert record["classes"] == list(FASHION_MNIST_CLASSES)
    assert record["command"] == ("python -m benchmarks.walkthrough --dataset fashion-mnist "
                                 "--data-dir DATA_DIR --output OUT")
    assert "--methods input_x_gradient,integrated_gradients,occlusion" in \
        record["attributions"]["command"]


def test_same_model_as_fwdderiv_train(run, tmp_path, capsys):
    data, out, record = run
    ours = fd.load(out / "cache" / "lenet5-fashion-mnist.npz")
    code = cli.main(["train", "--dataset", "fashion-mnist", "--data-dir", str(data),
                     "--epochs", "1", "--output", str(tmp_path / "m.npz"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    theirs = fd.load(tmp_path / "m.npz")
    for a, b in zip(ours.params, theirs.params, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    ds = load_dataset("fashion-mnist", data_dir=data)
    assert record["training"]["test_accuracy"] == fd.training.evaluate(ours, ds.x_test,
                                                                        ds.y_test)


def test_recorded_frames(run):
    data, out, record = run
    t = record["training"]
    assert t["updates"] == 2 and t["recorded_steps"] == walkthrough.record_schedule(2, 4)
    ds = load_dataset("fashion-mnist", data_dir=data)
    watched = t["settings"]["watched"]
    assert sorted(ds.y_test[watched]) == [0, 1, 2, 3]          # four different classes
    with np.load(out / "cache" / "frames.npz") as f:
        last = f["frames"][-1]                    # after the last update: the final weights
        net = fd.load(out / "cache" / "lenet5-fashion-mnist.npz")
        np.testing.assert_allclose(
            last, InputXGradient(net).attribute(ds.x_test[watched], ds.y_test[watched]),
            rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(f["outputs"][-1], net(ds.x_test[watched]), rtol=1e-6)


def test_attack_numbers_are_consistent(run):
    _, _, record = run
    a = record["attacks"]
    assert a["images"] == 24 and a["features"] == 784 and a["eps"] == [0, 0.05, 0.2]
    fgsm, l2 = a["fgsm"], a["l2_step"]
    assert fgsm["accuracy"][0] == l2["accuracy"][0] == a["clean_accuracy"]   # eps 0: clean
    assert max(fgsm["accuracy"] + l2["accuracy"]) <= a["clean_accuracy"]
    np.testing.assert_allclose(l2["eps"], np.array(a["eps"]) * 28)         # sqrt(784)
    for eps, linf in zip(a["eps"], fgsm["max_linf"]):
        assert linf == pytest.approx(eps, abs=1e-6)       # interior pixels move by eps
    for eps, top, mean in zip(l2["eps"], l2["max_l2"], l2["mean_l2"]):
        assert mean <= top <= eps * (1 + 1e-5)            # clipping only shortens
    assert fgsm["mean_l2"][1] > 0 and l2["mean_l2"][2] > l2["mean_l2"][1]


def test_integrated_gradients_completeness(run):
    data, out, record = run
    g = record["attributions"]
    with np.load(out / "cache" / "attribute" / "attributions.npz") as f:
        x, ig, probs = f["x"], f["integrated_gradients"], f["probabilities"]
    net = fd.load(out / "cache" / "lenet5-fashion-mnist.npz")
    gain = probs - net(np.zeros_like(x))
    delta = np.abs(ig.reshape(ig.shape[:2] + (-1,)).sum(-1) - gain).max()
    assert g["ig_max_abs_convergence_delta"] == pytest.approx(delta, rel=1e-6)
    assert delta < 0.05 and ig.shape == (3, 10, 1, 28, 28)


def test_second_run_uses_the_cache(run, capsys):
    data, out, record = run
    (out / "attack_accuracy.png").unlink()
    assert walkthrough.main([*ARGS, "--data-dir", str(data), "--output", str(out)]) == 0
    again = json.loads((out / "walkthrough.json").read_text())
    assert again["training"]["cached"] is True and record["training"]["cached"] is False
    assert {**again["training"], "cached": False} == record["training"]
    assert again["attacks"] == record["attacks"]
    assert (out / "attack_accuracy.png").exists()
    assert "[cached model]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--eps", "0,-1"], "--eps expected sizes >= 0"),
    (["--model", "resnet20"], "--model resnet20: pretrained: no recipe for model 'resnet20'"),
    (["--frames", "0"], "--frames must be at least 1"),
    (["--image-size", "32,32"], "--image-size expected H,W (each at least 8) with --dataset "
                                "folder"),
])
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        walkthrough.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_docs_quote_the_committed_mnist_run():
    """The walkthrough page's MNIST numbers are those of the JSON written beside its
    figures by ``python -m benchmarks.walkthrough --dataset mnist``."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "pages"
    figures = docs / "figures" / "walkthrough-mnist"
    record = json.loads((figures / "walkthrough.json").read_text())
    page = (docs / "walkthrough.md").read_text()
    assert record["dataset"] == "mnist" and record["command"].startswith(
        "python -m benchmarks.walkthrough --dataset mnist")
    a = record["attacks"]
    rows = [line for line in page.split("| eps (L-inf) |")[1].splitlines()[2:]
            if line.startswith("|")]
    assert len(rows) == len(a["eps"])
    for i, row in enumerate(rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells == [f"{a['eps'][i]:g}", f"{100 * a['fgsm']['accuracy'][i]:.1f}%",
                         f"{a['l2_step']['eps'][i]:.2f}",
                         f"{100 * a['l2_step']['accuracy'][i]:.1f}%"], row
    t = record["training"]
    assert f"({t['updates']:,}\nupdates), {len(t['recorded_steps'])} updates recorded" in page
    delta = record["attributions"]["ig_max_abs_convergence_delta"]
    assert f"integrated gradients is {delta:.4f} in probability" in page


def test_photo_folder(tmp_path):
    """The same run on a folder of colour photos: photo_cnn, the folder's class names and
    decoded size; the figures draw RGB images."""
    from ..datasets.makers import make_photos

    make_photos(tmp_path / "photos", per_class=6)
    out = tmp_path / "out"
    assert walkthrough.main(["--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
                             "--image-size", "16,24", "--epochs", "1", "--frames", "3",
                             "--eps", "0,0.1", "--images", "2", "--output", str(out)]) == 0
    record = json.loads((out / "walkthrough.json").read_text())
    assert record["model"] == "photo_cnn" and record["classes"] == ["cats", "dogs", "owls"]
    assert record["attacks"]["features"] == 3 * 16 * 24 and "decoded at 16x24" in record["data"]
    assert "--image-size 16,24" in record["attributions"]["command"]
    assert record["recipe"]["optimizer"] == "adam"
    for name in record["files"]:
        assert (out / name).stat().st_size > 1000, name
    with np.load(out / "cache" / "attribute" / "attributions.npz") as f:
        assert f["integrated_gradients"].shape == (2, 3, 3, 16, 24)
