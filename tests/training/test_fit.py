"""The training loop: determinism, learning, validation of inputs, checkpoints, progress."""
import io
import sys

import numba
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.datasets import load_dataset
from fwdderiv.training import History, evaluate, fit, load_checkpoint, predict, save_checkpoint
from fwdderiv.training import progress as progress_mod
from fwdderiv.training.loop import limited_threads


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.x_train[:400], ds.y_train[:400], ds.x_test, ds.y_test


def small_mlp(seed=0):
    return fd.models.mlp(in_shape=(1, 8, 8), hidden=(32,), seed=seed)


def weights(net):
    return [v.copy() for p in net.params for _, v in sorted(p.items())]


def test_same_seed_gives_identical_weights_and_other_seed_differs(digits):
    x, y = digits[:2]
    runs = []
    for seed in (3, 3, 4):
        net = fd.models.digits_net(seed=0)
        fit(net, x, y, epochs=1, batch_size=16, seed=seed, progress=False, num_threads=1)
        runs.append(weights(net))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(runs[0], runs[2]))


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 0.01)])
def test_fit_learns_and_reports_history(digits, optimizer, lr):
    x, y, xv, yv = digits
    net = small_mlp()
    before = evaluate(net, xv, yv)
    hist = fit(net, x, y, epochs=4, batch_size=20, lr=lr, optimizer=optimizer,
               lr_decay=0.8, x_val=xv, y_val=yv, progress=False)
    assert isinstance(hist, History)
    assert len(hist.loss) == len(hist.accuracy) == len(hist.val_accuracy) == 4
    assert hist.loss[-1] < hist.loss[0]
    np.testing.assert_allclose(hist.lr, [lr * 0.8 ** e for e in range(4)])
    assert hist.val_accuracy[-1] == pytest.approx(evaluate(net, xv, yv))
    assert before < 0.2 and hist.val_accuracy[-1] > 0.75   # chance is 0.1
    assert isinstance(net[-1], fd.Softmax)            # kept for inference
    np.testing.assert_allclose(net(xv[:5]).sum(axis=1), 1, rtol=1e-5)
    assert all(w.dtype == np.float32 for w in weights(net))


def test_evaluate_and_predict_do_not_depend_on_the_batch_size(digits):
    _, _, xv, yv = digits
    net = small_mlp(seed=1)
    manual = np.mean(net(xv).argmax(axis=1) == yv)
    assert evaluate(net, xv, yv, batch_size=7) == pytest.approx(manual)
    np.testing.assert_allclose(predict(net, xv, batch_size=7), net(xv), rtol=1e-5, atol=1e-7)


def test_checkpoint_round_trip(tmp_path, digits):
    x, y, xv, _ = digits
    net = small_mlp()
    path = tmp_path / "ck" / "model.npz"
    fit(net, x, y, epochs=2, batch_size=50, checkpoint=path, progress=False)
    loaded = load_checkpoint(path)
    assert [type(a) for a in loaded] == [type(b) for b in net]
    np.testing.assert_array_equal(loaded(xv), net(xv))
    np.testing.assert_array_equal(fd.load(path)(xv), net(xv))
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]  # no temp files left
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        save_checkpoint(net, tmp_path / "model.bin")


@pytest.mark.parametrize("change, error, match", [
    (lambda x, y: (x, y + 5), ValueError, r"labels in \[0, 10\).*from 5 to 14"),
    (lambda x, y: (x, y[:-1]), ValueError, "same N"),
    (lambda x, y: ((x * 255).astype(np.uint8), y), TypeError, r"float32 or float64.*astype"),
    (lambda x, y: (x, y.astype(np.float64)), TypeError, "integer class labels"),
    (lambda x, y: (x[:, :, :4], y), ValueError, "Sequential layer"),
], ids=["label-range", "length", "int-x", "float-y", "shape"])
def test_bad_data_raises_clear_errors(digits, change, error, match):
    x, y = change(*digits[:2])
    with pytest.raises(error, match=match):
        fit(small_mlp(), x, y, epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs as an integer >= 1"),
    ({"batch_size": 0}, "batch_size as an integer >= 1"),
    ({"optimizer": "rmsprop"}, "'sgd' or 'adam'"),
    ({"lr": -1.0}, "learning rate"),
    ({"lr_decay": 0.0}, r"lr_decay in \(0, 1\]"),
    ({"x_val": np.zeros((2, 1, 8, 8), np.float32)}, "both x_val and y_val"),
])
def test_bad_hyper_parameters_raise(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(small_mlp(), *digits[:2], progress=False, **kwargs)


def test_divergence_is_reported(digits):
    x, y = digits[:2]
    with pytest.raises(FloatingPointError, match="lower the learning rate"), \
            np.errstate(all="ignore"):
        fit(small_mlp(), x * 1e30, y, epochs=1, lr=1e30, momentum=0, progress=False)


def test_progress_bar_shows_loss_and_accuracy(digits, capsys):
    x, y = digits[:2]
    fit(small_mlp(), x[:64], y[:64], epochs=2, batch_size=32, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss" in err and "acc" in err
    fit(small_mlp(), x[:64], y[:64], epochs=1, progress=None)   # stderr is not a TTY
    assert capsys.readouterr().err == ""


def test_plain_fallback_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()
    bar = progress_mod.make_bar(10, "epoch 1/1", True, stream=stream)
    assert isinstance(bar, progress_mod.PlainBar)
    bar.update(10)
    bar.set_postfix_str("loss 0.1000 acc 0.9000")
    bar.close()
    text = stream.getvalue()
    assert "epoch 1/1 [" + "#" * progress_mod.PlainBar.WIDTH + "] 10/10" in text
    assert "loss 0.1000 acc 0.9000" in text and text.endswith("\n")


def test_progress_auto_follows_the_stream():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert progress_mod.progress_enabled(None, Tty()) is True
    assert progress_mod.progress_enabled(None, io.StringIO()) is False
    assert progress_mod.progress_enabled(True, io.StringIO()) is True


def test_thread_limit_is_scoped_and_does_not_change_the_weights(digits):
    x, y = digits[:2]
    before = numba.get_num_threads()
    with limited_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    nets = [fd.models.digits_net(seed=0) for _ in range(2)]
    fit(nets[0], x, y, epochs=1, batch_size=32, progress=False, num_threads=1)
    fit(nets[1], x, y, epochs=1, batch_size=32, progress=False, num_threads=None)
    for a, b in zip(weights(nets[0]), weights(nets[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_threads must be None or an integer >= 1"):
        fit(small_mlp(), x, y, epochs=1, progress=False, num_threads=0)
