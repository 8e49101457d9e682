"""The user's own model and inputs through every command: inputs a model cannot take are
refused before any framework runs, in one line naming the shape the model takes, the
shape received and the fix (exit status 2); ``--inputs``/``--labels`` on ``attribute``,
``attack`` and ``reproduce``; ``--image-size`` for a data set whose images do not fit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.cli import main
from fwdderiv.datasets import load_dataset

REPO = Path(__file__).resolve().parents[2]

#: A PyTorch model file: ``make`` declares no input (its first layer tells the channels),
#: ``make16`` declares 16x16 images through its factory's ``example_input``.
TORCH_MODEL = """\
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(),
                               torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 10))

def make16():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 7 * 7, 10))

make16.example_input = torch.zeros(1, 1, 16, 16)
"""

#: Module-level declaration.
DECLARED = """\
import torch

example_input = torch.zeros(2, 1, 8, 8)

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


def small_net():
    """A 10-class classifier of 8x8 grey images (the digits' size)."""
    return fd.Sequential([fd.Conv2d(1, 2, 3, seed=0), fd.Tanh(), fd.Flatten(),
                          fd.Linear(2 * 6 * 6, 10, seed=1), fd.Softmax()])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    fd.save(small_net(), d / "net.npz")
    (d / "model.py").write_text(TORCH_MODEL)
    (d / "declared.py").write_text(DECLARED)
    x = load_dataset("digits").x_test[:6].astype(np.float64)
    np.save(d / "x.npy", x)
    bad = {"no channel axis": x[:, 0], "wrong size": x[:, :, :6, :6],
           "integers": (x * 255).astype(np.uint8), "nan": np.where(x > 0.5, np.nan, x),
           "empty": x[:0], "one axis": x.reshape(-1)}
    for name, array in bad.items():
        np.save(d / f"{name.replace(' ', '_')}.npy", array)
    return d


def command(name, d, model, inputs):
    """argv of ``name`` on ``model`` and ``inputs`` (small sizes)."""
    return {
        "jacobian": ["jacobian", str(model), "--inputs", str(inputs), "--fd-examples", "0"],
        "check": ["check", str(model), "--inputs", str(inputs)],
        "attribute": ["attribute", "--model", str(model), "--inputs", str(inputs),
                      "--methods", "saliency", "--output", str(d / "attr")],
        "attack": ["attack", "--model", str(model), "--inputs", str(inputs), "--eps", "0,0.1",
                   "--pgd-steps", "1", "--output", str(d / "atk")],
        "reproduce": ["reproduce", "--model", str(model), "--inputs", str(inputs),
                      "--samples", "1", "--no-figures", "--output", str(d / "rep")],
    }[name]


COMMANDS = ("jacobian", "check", "attribute", "attack", "reproduce")

#: (input file, words the one-line error must hold).
BAD = {
    "no channel axis": ["(N, 1, 8, 8)", "got (6, 8, 8)", "add a channel axis with x[:, None]"],
    "wrong size": ["(N, 1, 8, 8)", "got (6, 1, 6, 6)", "resize the inputs to 8x8"],
    "integers": ["float32 or float64", "uint8", "/ 255"],
    "nan": ["finite values", "NaN"],
    "empty": ["N >= 1", "(0, 1, 8, 8)"],
    "one axis": ["(N, *S)", "x[None]"],
}


def one_line_error(capsys, argv):
    """Run ``fwdderiv argv`` in-process; (exit status, the single stderr line)."""
    status = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"fwdderiv {argv[0]}: error: ") and "Traceback" not in err[0]
    return status, err[0]


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("name", COMMANDS)
def test_bad_inputs_are_one_line_with_the_expected_shape(name, case, files, capsys):
    inputs = files / f"{case.replace(' ', '_')}.npy"
    status, line = one_line_error(capsys, command(name, files, files / "net.npz", inputs))
    assert status == 2
    for word in BAD[case]:
        assert word in line, line


@pytest.mark.parametrize("name", COMMANDS)
def test_a_torch_model_names_its_declared_input(name, files, capsys):
    """``make16.example_input`` is (1, 1, 16, 16): 8x8 images are refused before PyTorch
    runs, naming the declared shape."""
    status, line = one_line_error(capsys, command(name, files, f"{files / 'model.py'}:make16",
                                                  files / "x.npy"))
    assert status == 2
    assert "(N, 1, 16, 16) (its example_input)" in line and "got (6, 1, 8, 8)" in line
    assert "resize the inputs to 16x16" in line


def test_a_torch_model_without_a_declaration_names_its_first_layer(files, capsys):
    status, line = one_line_error(capsys, command("jacobian", files,
                                                  f"{files / 'model.py'}:make",
                                                  files / "no_channel_axis.npy"))
    assert status == 2 and "(N, 1, H, W) (its first layer Conv2d(1, 2" in line
    assert "add a channel axis" in line


def test_a_module_level_example_input(files, capsys):
    status, line = one_line_error(capsys, command("check", files,
                                                  f"{files / 'declared.py'}:make",
                                                  files / "wrong_size.npy"))
    assert status == 2 and "(N, 1, 8, 8) (its example_input)" in line


def test_the_real_program_exits_2_with_one_line(files):
    run = subprocess.run([sys.executable, "-m", "fwdderiv", "jacobian",
                          f"{files / 'model.py'}:make16", "--inputs",
                          str(files / "no_channel_axis.npy")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "(N, 1, 16, 16)" in lines[0] and "got (6, 8, 8)" in lines[0]


def test_attack_on_own_inputs_with_a_torch_model(files, capsys):
    """JSMA's sibling attacks on the user's images with the user's model: labels default
    to the model's predictions (said), or come from --labels."""
    out = files / "atk-own"
    argv = ["attack", "--model", f"{files / 'model.py'}:make", "--inputs",
            str(files / "x.npy"), "--eps", "0,0.2", "--pgd-steps", "1", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "labels: the model's predictions (no --labels given)" in printed
    record = json.loads((out / "accuracy_vs_eps.json").read_text())
    assert record["images"] == 6 and record["clean_accuracy"] == 1.0
    assert record["accuracy"]["fgsm"][0] == 1.0
    y = load_dataset("digits").y_test[:6]
    np.save(files / "y.npy", y)
    assert main(argv[:5] + ["--eps", "0", "--attacks", "fgsm", "--output", str(out),
                            "--labels", str(files / "y.npy")]) == 0
    assert "labels: the model's predictions" not in capsys.readouterr().out
    import torch
    ns = {}
    exec(TORCH_MODEL, ns)
    with torch.no_grad():
        pred = ns["make"]()(torch.from_numpy(np.load(files / "x.npy")).float()).argmax(1)
    record = json.loads((out / "accuracy_vs_eps.json").read_text())
    assert record["clean_accuracy"] == pytest.approx(float((pred.numpy() == y).mean()))


def test_attribute_and_reproduce_on_own_inputs(files, capsys):
    assert main(command("attribute", files, f"{files / 'model.py'}:make",
                        files / "x.npy") + ["--batch", "2"]) == 0
    saved = np.load(files / "attr" / "attributions.npz")
    np.testing.assert_array_equal(saved["x"], np.load(files / "x.npy")[:2])
    assert main(command("reproduce", files, files / "net.npz", files / "x.npy")) == 0
    results = json.loads((files / "rep" / "results.json").read_text())
    assert results["n_crafted"] == 9 and results["config"]["data"] == "inputs"
    assert "the model's predictions" in capsys.readouterr().err


@pytest.mark.parametrize("labels, words", [
    (np.zeros(5, np.int64), ["one label per input", "(6,)"]),
    (np.full(6, 10), ["[0, 10)"]),
    (np.full(6, 0.5), ["integer class labels"]),
])
def test_bad_labels(labels, words, files, capsys):
    np.save(files / "bad_y.npy", labels)
    status, line = one_line_error(capsys, command("attack", files, files / "net.npz",
                                                  files / "x.npy")
                                  + ["--labels", str(files / "bad_y.npy")])
    assert status == 2 and all(w in line for w in words), line


def test_labels_need_inputs(files, capsys):
    status, line = one_line_error(capsys, ["attack", "--model", str(files / "net.npz"),
                                           "--labels", str(files / "x.npy")])
    assert status == 2 and "--labels gives the classes of --inputs" in line


def test_data_set_images_that_do_not_fit_name_image_size(files, capsys):
    """The digits (8x8) for a model declaring 16x16 images: refused with the fix, then
    run with --image-size 16,16 (each pixel repeated 2x2)."""
    model = f"{files / 'model.py'}:make16"
    argv = ["attack", "--model", model, "--batch", "4", "--eps", "0,0.1", "--pgd-steps", "1",
            "--output", str(files / "atk16")]
    status, line = one_line_error(capsys, argv)
    assert status == 2 and "--dataset digits" in line and "(N, 1, 16, 16)" in line
    assert "pass --image-size 16,16" in line
    assert main(argv + ["--image-size", "16,16"]) == 0
    assert "resized to 16x16" in capsys.readouterr().out
    assert main(["attribute", "--model", model, "--batch", "1", "--methods", "saliency",
                 "--image-size", "16,16", "--output", str(files / "attr16")]) == 0
    x = np.load(files / "attr16" / "attributions.npz")["x"]
    digit = load_dataset("digits").x_test[:1]
    np.testing.assert_array_equal(x, np.repeat(np.repeat(digit, 2, axis=2), 2, axis=3))


def test_image_size_pads_mnist_to_lenet(capsys):
    from fwdderiv.commands._inputs import resize_images
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    y = resize_images(x, (32, 32))
    assert y.shape == (2, 1, 32, 32) and (y[:, :, 2:30, 2:30] == x).all()
    assert y.sum() == x.sum()
    with pytest.raises(ValueError, match="smaller than the images"):
        resize_images(x, (16, 16))
