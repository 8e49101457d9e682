"""Smoke runs of ``python -m benchmarks.training_peers`` on tiny data (seconds): the two
trainers see the same minibatches in the same order from the same weights, so their
losses after every round agree; the rounds cover the epoch. No timing is asserted."""
import json

import numpy as np
import pytest

from benchmarks import training_peers

from ..datasets.makers import make_cifar, make_photos


def run(tmp_path, *argv):
    """The benchmark in this process; it sets one thread for its run only, and leaves
    Numba's, BLAS's and PyTorch's thread counts as they were (the rest of the suite runs
    after it)."""
    import numba
    import torch
    from threadpoolctl import threadpool_info
    counts = lambda: (numba.get_num_threads(), torch.get_num_threads(),  # noqa: E731
                      {i["filepath"]: i["num_threads"] for i in threadpool_info()})
    before = counts()
    out = tmp_path / "peers.json"
    assert training_peers.main([*argv, "--json", str(out)]) == 0
    after = counts()
    assert after[:2] == before[:2]
    assert {k: after[2][k] for k in before[2]} == before[2]   # libraries loaded since: new
    return json.loads(out.read_text())["results"]


def check_same_trajectory(r, rounds):
    bs = r["recipe"]["batch_size"]
    timed = -(-r["train_images"] // bs) - 1            # the first update is not timed
    assert len(r["rounds"]["images"]) == min(rounds, timed) >= 1
    assert r["timed_images"] == sum(r["rounds"]["images"]) == r["train_images"] - bs
    ours, theirs = (np.array(r["rounds"][f"{k}_probe_loss"]) for k in ("fwdderiv", "torch"))
    np.testing.assert_allclose(ours, theirs, rtol=2e-4)  # float32, same steps
    assert r["prediction_agreement"] >= 0.9
    assert r["fwdderiv_seconds"] > 0 and r["torch_seconds"] > 0
    ratio = np.array(r["rounds"]["fwdderiv_seconds"]) / np.array(r["rounds"]["torch_seconds"])
    assert r["ratio_min"] == ratio.min() <= r["ratio_median"] <= ratio.max() == r["ratio_max"]


def test_synthetic_photo_cnn(tmp_path, capsys):
    (r,) = run(tmp_path, "--models", "photo_cnn", "--train-size", "100", "--test-size", "20",
               "--rounds", "2")
    assert r["synthetic"] and r["model"] == "photo_cnn" and r["recipe"]["optimizer"] == "adam"
    assert r["train_images"] == 100 and r["test_images"] == 20
    check_same_trajectory(r, 2)
    out = capsys.readouterr().out
    assert "accuracies are meaningless (only the times are)" in out
    assert "epoch time ratio fwdderiv / PyTorch" in out


def test_cifar10_files_resnet20(tmp_path):
    make_cifar(tmp_path / "cifar", n_test=12, n_train=20)          # 100 training records
    (r,) = run(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
               "--train-size", "96", "--batch-size", "32", "--rounds", "5")
    assert not r["synthetic"] and r["model"] == "resnet20" and "CIFAR-10" in r["data"]
    assert r["train_images"] == 96 and r["recipe"]["weight_decay"] == 1e-4
    check_same_trajectory(r, 5)                    # 3 updates: 2 timed rounds


def test_photo_folder(tmp_path):
    make_photos(tmp_path / "photos", per_class=8)
    (r,) = run(tmp_path, "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
               "--batch-size", "4", "--rounds", "3")
    assert r["model"] == "photo_cnn" and "decoded at 64x64" in r["data"]
    check_same_trajectory(r, 3)


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "x"], "--data-dir needs --dataset"),
    (["--models", "lenet5"], "--models expected names among"),
    (["--rounds", "0"], "--rounds must be at least 1"),
])
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        training_peers.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
