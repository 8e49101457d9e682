"""``--dataset fashion-mnist``, ``cifar10`` and ``folder`` on the command line, end to end
on small files the tests write (one epoch, a few dozen images), with the class names in
the output and the reports."""
import json

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv import cli
from fwdderiv.datasets import FASHION_MNIST_CLASSES, SkippedImageWarning, load_dataset

from ..datasets.conftest import make_mnist_files
from ..datasets.makers import make_cifar, make_photos


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    make_mnist_files(root, split="train", n=40, seed=1)
    make_mnist_files(root, split="test", n=20, seed=2)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_photos(root, per_class=10)
    (root / "dogs" / "broken.jpg").write_text("no image")
    return root


def run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_fashion_mnist(fashion, tmp_path, capsys):
    out_path = tmp_path / "lenet.npz"
    code, out, err = run(["train", "--dataset", "fashion-mnist", "--data-dir", str(fashion),
                          "--epochs", "1", "--output", str(out_path), "--no-progress"], capsys)
    assert code == 0, err
    assert "lenet5 on fashion-mnist: held-out accuracy" in out
    assert "Fashion-MNIST train/test 40/20" in err
    for name in ("T-shirt/top", "Ankle boot"):            # per-class accuracy, by name
        assert f"{name} " in out
    net = fd.load(out_path)
    ds = load_dataset("fashion-mnist", data_dir=fashion)
    accuracy = float(out.split("held-out accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(np.mean(net(ds.x_test).argmax(1) == ds.y_test), abs=1e-4)
    assert net.output_shape((1, 28, 28)) == (10,)


def test_train_folder_then_attack_and_check(photos, tmp_path, capsys):
    model = tmp_path / "photo.npz"
    code, out, err = run(["train", "--dataset", "folder", "--data-dir", str(photos),
                          "--image-size", "16,16", "--epochs", "1", "--output", str(model),
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "photo_cnn on folder: held-out accuracy" in out
    assert "cats " in out and "owls " in out
    assert "skipped 1 of 31 files" in err and "broken.jpg" in err
    net = fd.load(model)
    assert net.output_shape((3, 16, 16)) == (3,)          # the class count of the folder

    atk = tmp_path / "atk"
    code, out, err = run(["attack", "--dataset", "folder", "--data-dir", str(photos),
                          "--image-size", "16,16", "--model", str(model), "--eps", "0,0.1",
                          "--attacks", "fgsm", "--output", str(atk), "--no-progress"], capsys)
    assert code == 0, err
    record = json.loads((atk / "accuracy_vs_eps.json").read_text())
    assert record["classes"] == ["cats", "dogs", "owls"] and record["images"] == 6
    assert (atk / "fgsm_example.png").stat().st_size > 0

    with pytest.warns(SkippedImageWarning, match="broken.jpg"):
        x = load_dataset("folder", data_dir=photos, image_size=(16, 16)).x_test[:2]
    np.save(tmp_path / "J.npy", net.jacobian(x.astype(np.float64)))
    code, out, err = run(["check", str(model), "--dataset", "folder", "--data-dir",
                          str(photos), "--image-size", "16,16", "--batch", "2",
                          "--jacobian", str(tmp_path / "J.npy")], capsys)
    assert code == 0, err
    assert "at 2 inputs" in out and "PASS" in out


def test_attribute_names_the_classes(photos, tmp_path, capsys):
    code, out, err = run(["attribute", "--dataset", "folder", "--data-dir", str(photos),
                          "--image-size", "12,12", "--untrained", "--batch", "2",
                          "--methods", "saliency", "--output", str(tmp_path / "a"),
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "photo_cnn (untrained) on image folder photos" in out
    report = json.loads((tmp_path / "a" / "attributions.json").read_text())
    assert report["classes"] == ["cats", "dogs", "owls"]
    saved = np.load(tmp_path / "a" / "attributions.npz")
    assert saved["x"].shape == (2, 3, 12, 12) and saved["saliency"].shape == (2, 3, 3, 12, 12)


def test_cifar10_and_check_inputs_from_fashion(tmp_path, fashion, capsys):
    make_cifar(tmp_path / "cifar" / "cifar-10-batches-bin", n_test=10)
    code, out, err = run(["attack", "--dataset", "cifar10", "--data-dir",
                          str(tmp_path / "cifar"), "--untrained", "--batch", "1", "--eps", "0",
                          "--attacks", "fgsm", "--output", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert "resnet20 (untrained) on CIFAR-10 test_batch split 9/1" in out
    record = json.loads((tmp_path / "c" / "accuracy_vs_eps.json").read_text())
    assert record["classes"][:3] == ["airplane", "automobile", "bird"]

    net = fd.Sequential([fd.Flatten(), fd.Linear(784, 4, seed=0), fd.Tanh()])
    fd.save(net, tmp_path / "lin.npz")
    x = load_dataset("fashion-mnist", data_dir=fashion).x_test[:3].astype(np.float64)
    J = net.jacobian(x)
    J[2, 1, 0, 5, 5] += 1.0                                 # one wrong entry in image 2
    np.save(tmp_path / "J.npy", J)
    code, out, _ = run(["check", str(tmp_path / "lin.npz"), "--dataset", "fashion-mnist",
                        "--data-dir", str(fashion), "--batch", "3", "--jacobian",
                        str(tmp_path / "J.npy")], capsys)
    assert code == 1 and "FAIL" in out and "example 2" in out
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top"


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "folder"], "--dataset folder needs --data-dir DIR"),
    (["train", "--dataset", "mnist", "--image-size", "16,16"],
     "--image-size is the size --dataset folder decodes its photos at"),
    (["attack", "--dataset", "fashion-mnist", "--data-dir", "{missing}", "--untrained"],
     "no Fashion-MNIST files in"),
    (["jacobian", "--dataset", "cifar10", "--data-dir", "{missing}", "--untrained"],
     "no CIFAR-10 binary files"),
    (["attack", "--dataset", "digits", "--data-dir", "x"], "--data-dir applies to --dataset"),
])
def test_usage_errors_name_the_option(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FWDDERIV_DATA_DIR", str(tmp_path / "empty"))
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err
