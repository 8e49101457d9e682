"""Every sharded job on a 2-worker local cluster gives the numbers of one process: the
Jacobian (in memory, .npy, Zarr written by the workers, resumed), the check, the
attributions, the FGSM/PGD curves and JSMA; and a worker's memory stays within its
budget while the whole Jacobian is larger."""
import json
import logging

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attribution import IntegratedGradients
from fwdderiv.cli import build_parser
from fwdderiv.commands.attack import accuracy_curve
from fwdderiv.distributed import attribute, compare, jacobian, robust_accuracy
from fwdderiv.distributed.jacobians import WORK_SUFFIX
from fwdderiv.interop.check import compare as compare_one
from fwdderiv.training.progress import make_bar
from tests.distributed import tasks
from tests.distributed.conftest import mlp


def main(argv):
    """The command as ``fwdderiv`` runs it, without the process-wide tuning."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def by_shard(f, x, size):
    """``f`` on consecutive shards of ``x``, concatenated: the single-process result."""
    return np.concatenate([f(x[a:a + size]) for a in range(0, len(x), size)])


def test_jacobian_on_two_workers_equals_one_process(client, lenet):
    net, x = lenet
    J = jacobian(net, x, shard_size=7, scheduler=client, progress=False)
    np.testing.assert_array_equal(J, jacobian(net, x, shard_size=7, progress=False))
    np.testing.assert_array_equal(J, by_shard(net.jacobian, x, 7))
    np.testing.assert_allclose(J, net.jacobian(x), rtol=1e-12, atol=1e-15)   # one batch
    Jr = jacobian(net, x, mode="reverse", shard_size=40, scheduler=client, progress=False)
    np.testing.assert_array_equal(Jr, net.jacobian(x, mode="reverse"))       # one shard


def test_zarr_written_by_two_workers_equals_the_in_memory_jacobian(client, lenet, tmp_path):
    net, x = lenet
    ref = jacobian(net, x, shard_size=7, progress=False)
    F, Z = jacobian(net, x, shard_size=7, scheduler=client, output=tmp_path / "J.zarr",
                    return_output=True, progress=False)
    assert tuple(Z.chunks) == (7, 10, 1, 28, 28)                  # a chunk per shard
    np.testing.assert_array_equal(Z[:], ref)
    np.testing.assert_array_equal(F, by_shard(net, x, 7))
    N = jacobian(net, x, shard_size=7, scheduler=client, output=tmp_path / "J.npy",
                 progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "J.npy"), ref)
    assert isinstance(N, np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["J.npy", "J.zarr"]  # work gone


def test_interrupted_zarr_output_resumes_from_its_shards(client, lenet, tmp_path, caplog):
    net, x = lenet
    out = tmp_path / "J.zarr"

    def stop(done, total):
        if done >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jacobian(net, x, shard_size=7, scheduler=client, output=out, progress=stop)
    work = tmp_path / ("J.zarr" + WORK_SUFFIX)
    assert not out.exists() and work.is_dir()          # an output that exists is complete
    kept = len(list(work.glob("shard-*.npz")))
    assert 2 <= kept < 6
    with caplog.at_level(logging.INFO, logger="fwdderiv.distributed"):
        Z = jacobian(net, x, shard_size=7, scheduler=client, output=out, progress=False)
    assert any(f"{kept} of 6 shards resumed" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(Z[:], by_shard(net.jacobian, x, 7))
    assert not work.exists()


def test_each_worker_holds_a_shard_not_the_result(client, tmp_path):
    """The Jacobian (31 MiB) goes to Zarr; each worker's peak resident memory during the
    run rises by less than half of it (a shard is 2 MiB)."""
    net = mlp()
    x = np.random.default_rng(0).random((512, 1, 28, 28))
    total = 512 * 10 * 784 * 8
    run = dict(scheduler=client, max_memory=2**21, progress=False)
    jacobian(net, x[:8], shard_size=4, output=tmp_path / "warm.zarr", **run)  # imports zarr
    before = client.run(tasks.reset_peak)
    Z = jacobian(net, x, shard_size=32, output=tmp_path / "J.zarr", **run)
    after = client.run(tasks.memory_status)
    assert Z.nbytes == total
    rise = {w: after[w][1] - before[w][0] for w in before}
    assert max(rise.values()) < total / 2, rise
    np.testing.assert_array_equal(Z[100:110], net.jacobian(x[96:128], max_memory=2**21)[4:14])


def test_check_statistics_on_two_workers_equal_one_process(client):
    net = mlp(n_in=16, hidden=8)
    x = np.random.default_rng(1).random((30, 1, 4, 4))
    J = net.jacobian(x)
    J[3, 2, 0, 1, 1] += 1e-3 * np.abs(J).max()                    # two wrong entries
    J[21, 5, 0, 0, 2] -= 2e-3 * np.abs(J).max()
    on_cluster = compare(net, x, J, scheduler=client, shard_size=8, progress=False)
    assert on_cluster == compare(net, x, J, shard_size=8, progress=False)
    whole = compare_one(net, x, J)
    for key in ("beyond_tolerance", "kink_explained", "unexplained", "unexplained_positions",
                "max_abs", "ok"):
        assert on_cluster[key] == whole[key], key
    assert on_cluster["unexplained_positions"] == [[3, 2, 0, 1, 1], [21, 5, 0, 0, 2]]
    assert on_cluster["worst_per_output"][5]["example"] == 21
    assert on_cluster["shards"] == 4


def test_attributions_on_two_workers_equal_one_process(client, lenet):
    net, x = lenet
    x = x[:10]
    target = np.arange(10) % 10
    ig = IntegratedGradients(net)
    A = attribute(ig, x, target=target, n_steps=4, shard_size=4, scheduler=client,
                  progress=False)
    np.testing.assert_array_equal(A, attribute(ig, x, target=target, n_steps=4, shard_size=4,
                                               progress=False))
    np.testing.assert_array_equal(A, np.concatenate(
        [ig.attribute(x[a:a + 4], target=target[a:a + 4], n_steps=4) for a in (0, 4, 8)]))


def test_attack_curves_on_two_workers_equal_one_process(client, digits):
    net, ds = digits
    x, y = ds.x_test[:48], ds.y_test[:48]
    curves = robust_accuracy(net, x, y, [0.0, 0.1], nb_iter=2, batch_size=8, shard_size=16,
                             seed=3, scheduler=client, progress=False)
    single = accuracy_curve(net, x, y, [0.0, 0.1], ["fgsm", "pgd"], 2, 2.5 / 2, 8,
                            make_bar(1, "", False), seed=3)
    assert {a: list(v) for a, v in curves.items()} == single
    with pytest.raises(ValueError, match="multiple of batch_size"):
        robust_accuracy(net, x, y, [0.1], batch_size=8, shard_size=12)


def test_jsma_on_worker_processes_equals_one_process(client, digits, tmp_path):
    from fwdderiv.attacks import jsma
    net, ds = digits
    x, t = ds.x_test[:12].astype(np.float64), (ds.y_test[:12] + 3) % 10
    ref = jsma(net, x, t, upsilon=0.1)
    res = jsma(net, x, t, upsilon=0.1, scheduler=client, shard_size=5, shard_dir=tmp_path)
    for f in ("x_adv", "success", "n_changed", "iterations", "predictions"):
        np.testing.assert_array_equal(getattr(res, f), getattr(ref, f), err_msg=f)


@pytest.fixture(scope="module")
def digits():
    from fwdderiv.datasets import load_dataset
    from fwdderiv.models.trained import build_model
    return build_model("digits_net", (1, 8, 8), seed=0), load_dataset("digits")


def test_commands_on_the_cluster_write_what_they_write_without_it(client, tmp_path):
    address = client.scheduler.address
    x = np.random.default_rng(2).random((9, 1, 8, 8))
    np.save(tmp_path / "x.npy", x)
    common = ["--untrained", "--inputs", str(tmp_path / "x.npy"), "--show", "0",
              "--fd-examples", "0", "--no-progress"]
    assert main(["jacobian", *common, "--output", str(tmp_path / "J.npy")]) == 0
    assert main(["jacobian", *common, "--output", str(tmp_path / "J.zarr"),
                 "--scheduler", address, "--shard-size", "9"]) == 0   # one shard
    assert main(["jacobian", *common, "--output", str(tmp_path / "J4.zarr"),
                 "--scheduler", address, "--shard-size", "4"]) == 0
    import zarr
    from fwdderiv.models.trained import build_model
    net = build_model("digits_net", (1, 8, 8), seed=0)
    for name, ref in (("J.zarr", np.load(tmp_path / "J.npy")),
                      ("J4.zarr", by_shard(net.jacobian, x, 4))):
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / name), mode="r")[:], ref)
    attr = ["attribute", "--untrained", "--batch", "6", "--n-steps", "4", "--nt-samples", "2",
            "--shard-size", "4", "--methods", "integrated_gradients,smoothgrad,occlusion"]
    assert main(attr + ["--output", str(tmp_path / "a1")]) == 0
    assert main(attr + ["--output", str(tmp_path / "a2"), "--scheduler", address]) == 0
    with np.load(tmp_path / "a1" / "attributions.npz") as a, \
            np.load(tmp_path / "a2" / "attributions.npz") as b:
        for m in ("integrated_gradients", "smoothgrad", "occlusion"):
            np.testing.assert_array_equal(a[m], b[m], err_msg=m)
    assert len(list((tmp_path / "a2" / "shards").glob("shard-*.npz"))) == 2
    att = ["attack", "--untrained", "--batch", "40", "--eps", "0,0.1", "--pgd-steps", "2",
           "--attack-batch", "8"]
    assert main(att + ["--output", str(tmp_path / "k1")]) == 0
    assert main(att + ["--output", str(tmp_path / "k2"), "--scheduler", address,
                       "--shard-size", "16"]) == 0
    curves = [json.loads((tmp_path / k / "accuracy_vs_eps.json").read_text())["accuracy"]
              for k in ("k1", "k2")]
    assert curves[0] == curves[1]


def test_check_command_on_the_cluster_reports_what_it_reports_without_it(client, tmp_path):
    net = mlp(n_in=16, hidden=8)
    x = np.random.default_rng(3).random((10, 1, 4, 4))
    J = net.jacobian(x)
    J[7, 1, 0, 2, 2] += 1e-3 * np.abs(J).max()
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "J.npy", J)
    argv = ["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
            "--jacobian", str(tmp_path / "J.npy")]
    assert main(argv + ["--json", str(tmp_path / "one.json")]) == 1
    assert main(argv + ["--json", str(tmp_path / "two.json"), "--scheduler",
                        client.scheduler.address, "--shard-size", "3"]) == 1
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    for key in ("unexplained", "unexplained_positions", "beyond_tolerance", "max_abs", "ok",
                "verdict"):
        assert one[key] == two[key], key
    # --output: the float64 reference, written chunk by chunk by the workers into Zarr
    # and by this process into .npy, equals the in-memory Jacobian
    import zarr
    assert main(argv + ["--scheduler", client.scheduler.address, "--shard-size", "3",
                        "--output", str(tmp_path / "ref.zarr")]) == 1
    assert main(argv + ["--output", str(tmp_path / "ref.npy")]) == 1
    ref = net.jacobian(x)
    np.testing.assert_allclose(zarr.open(str(tmp_path / "ref.zarr"), mode="r")[:], ref,
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.load(tmp_path / "ref.npy"), ref, rtol=1e-13, atol=1e-15)
