"""The sharded map on a 2-worker local cluster: order, settings lists, resuming without
recomputing, a clean cancel, the local cluster it starts, and its refusals."""
import logging
import time

import numpy as np
import pytest

from fwdderiv.distributed import cluster, digest, jacobian, run_sharded
from tests.distributed import tasks
from tests.distributed.conftest import mlp


def computed_starts(folder):
    """Start index of every shard computation recorded by ``tasks.counted_square``."""
    return sorted(int(p.name.split("-")[0]) for p in folder.iterdir()
                  if not p.name.startswith("failed"))


def test_a_list_of_settings_runs_one_task_each_in_order(client):
    lambdas = [0.03, 0.1, 0.3, 1.0]
    on_cluster = run_sharded(tasks.setting_result, lambdas, shared=2.0, shard_size=1,
                             scheduler=client, progress=False)
    here = run_sharded(tasks.setting_result, lambdas, shared=2.0, shard_size=1,
                       progress=False)
    np.testing.assert_array_equal(on_cluster["value"], [0.06, 0.2, 0.6, 2.0])
    np.testing.assert_array_equal(on_cluster["row"], [[v, i] for i, v in enumerate(lambdas)])
    for key in ("value", "row"):
        np.testing.assert_array_equal(on_cluster[key], here[key])
    parts = run_sharded(tasks.setting_result, lambdas, shared=2.0, shard_size=3,
                        scheduler=client, progress=False, combine=False)
    assert [p["row"].tolist() for p in parts] == [[[0.03, 0.0]], [[1.0, 3.0]]]
    assert [float(p["value"]) for p in parts] == [2 * (0.03 + 0.1 + 0.3), 2.0]


def test_interrupted_run_resumes_without_recomputing(client, tmp_path, caplog):
    items = np.arange(40.0).reshape(20, 2)
    counts, shards = tmp_path / "counts", tmp_path / "shards"
    counts.mkdir()
    run = dict(shared=1.0, shard_size=3, scheduler=client, shard_dir=shards, progress=False)
    with pytest.raises(RuntimeError, match="fails once"):          # shard 3 (rows 9-11)
        run_sharded(tasks.counted_square, items, args=(str(counts), 9), **run)
    saved = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.npz")}
    first = computed_starts(counts)
    assert "shard-00003.npz" not in saved and len(saved) < 7
    with caplog.at_level(logging.INFO, logger="fwdderiv.distributed"):
        out = run_sharded(tasks.counted_square, items, args=(str(counts), 9), **run)
    np.testing.assert_array_equal(out, items ** 2 + 1.0)
    assert any(f"{len(saved)} of 7 shards resumed" in r.getMessage() for r in caplog.records)
    second = computed_starts(counts)
    for start in first:
        second.remove(start)
    # the second run computed exactly the shards the first one had not written
    saved_starts = {3 * int(name[6:11]) for name in saved}
    assert sorted(second) == sorted(set(range(0, 20, 3)) - saved_starts)
    for name, mtime in saved.items():
        assert (shards / name).stat().st_mtime_ns == mtime          # not rewritten
    # other settings: no shard is reused (its fingerprint differs)
    before = len(computed_starts(counts))
    run_sharded(tasks.counted_square, items, args=(str(counts), 9), settings={"v": 2}, **run)
    assert len(computed_starts(counts)) == before + 7


def test_interruption_cancels_the_shards_left_and_keeps_the_finished(client, tmp_path):
    x = np.arange(16.0)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sharded(tasks.slow_rows, x, args=(0.5,), shard_size=2, scheduler=client,
                    shard_dir=tmp_path, progress=stop)
    assert len(list(tmp_path.glob("shard-*.npz"))) == 1        # the one that finished
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.run_on_scheduler(_our_tasks):
        time.sleep(0.1)
    assert client.run_on_scheduler(_our_tasks) == []            # nothing left running
    np.testing.assert_array_equal(
        run_sharded(tasks.slow_rows, x, args=(0.0,), shard_size=2, scheduler=client,
                    shard_dir=tmp_path, progress=False), x)


def _our_tasks(dask_scheduler):
    return [str(k) for k in dask_scheduler.tasks if "call_task" in str(k)]


def test_workers_start_a_local_cluster_with_the_cores_split(lenet):
    net, x = lenet
    J = jacobian(net, x[:6], workers=2, shard_size=3, progress=False)
    np.testing.assert_array_equal(J, np.concatenate([net.jacobian(x[:3]), net.jacobian(x[3:6])]))
    assert cluster.local_threads(2) == max(1, cluster.local_threads(1) // 2)


def test_digest_follows_contents_not_identity():
    a, b = mlp(seed=0), mlp(seed=0)
    assert digest(a) == digest(b) and digest(a) != digest(mlp(seed=1))
    b.layers[1].weight = b.layers[1].weight.copy()
    w = b.layers[1].weight
    w[0, 0] = np.nextafter(w[0, 0], w.dtype.type(np.inf))          # one ulp
    assert digest(a) != digest(b)
    assert digest({"x": np.zeros(3, np.float32)}) != digest({"x": np.zeros(3)})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(workers=0), ValueError, "workers, the number of local Dask worker processes"),
    (dict(workers=True), ValueError, "workers"),
    (dict(shard_size=0), ValueError, "shard_size as an integer >= 1"),
    (dict(shard_size=2.5), TypeError, "shard_size as an integer"),
    (dict(workers=2, scheduler="tcp://127.0.0.1:8786"), ValueError, "not both|got both"),
    (dict(scheduler=3), TypeError, "scheduler as an address"),
    (dict(progress="yes"), TypeError, "progress=None, True, False or a callable"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, error, match):
    with pytest.raises(error, match=match):
        run_sharded(tasks.slow_rows, np.zeros(4), args=(0.0,), **kwargs)


def test_bad_items_and_results_are_refused():
    with pytest.raises(TypeError, match="items as an ndarray of rows"):
        run_sharded(tasks.slow_rows, 7, args=(0.0,))
    with pytest.raises(ValueError, match="same number of rows"):
        run_sharded(tasks.slow_rows, (np.zeros(3), np.zeros(4)), args=(0.0,))
    with pytest.raises(TypeError, match="a task returns an ndarray, a dict of ndarrays"):
        run_sharded(tasks.slow_rows, ["a", object()], args=(0.0,), shard_size=2,
                    progress=False)


def test_output_with_an_unknown_suffix_is_refused(lenet, tmp_path):
    net, x = lenet
    with pytest.raises(ValueError, match=r"ending in \.zarr .* or \.npy"):
        jacobian(net, x, output=tmp_path / "J.h5")
    with pytest.raises(ValueError, match="workers"):
        jacobian(net, x, output=tmp_path / "J.zarr", workers=0)
    assert not list(tmp_path.iterdir())                 # refused before any file


def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    t = time.monotonic()
    with pytest.raises(ConnectionError, match="could not reach a Dask scheduler at "
                                              "'tcp://127.0.0.1:9' within 2 s.*dask "
                                              "scheduler"):
        run_sharded(tasks.slow_rows, np.zeros(2), args=(0.0,), scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - t < 15


def test_in_process_without_a_cluster_writes_and_resumes(tmp_path):
    x = np.random.default_rng(1).random((9, 4))
    calls = []
    again = run_sharded(tasks.slow_rows, x, args=(0.0,), shard_size=4, shard_dir=tmp_path,
                        progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 9), (8, 9), (9, 9)]
    np.testing.assert_array_equal(again, x)
    calls.clear()
    run_sharded(tasks.slow_rows, x, args=(0.0,), shard_size=4, shard_dir=tmp_path,
                progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 9), (8, 9), (9, 9)]                      # resumed shards count
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
