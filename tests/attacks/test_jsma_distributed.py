"""JSMA sharded over Dask workers: identical to one process, resumable without recomputing."""
import logging

import numpy as np
import pytest
from distributed import Client, LocalCluster

from fwdderiv.attacks import jsma

FIELDS = ("x_adv", "success", "n_changed", "iterations", "original", "predictions",
          "distortion", "targets")


@pytest.fixture(scope="module")
def rows(digits):
    x = digits.x_test[:16].astype(np.float64)
    t = (digits.y_test[:16] + 1 + np.arange(16) % 9) % 10
    return x, t


@pytest.fixture(scope="module")
def client():
    # In-process workers (threads): the tests check sharding and resuming, not processes.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_two_workers_give_the_single_process_result(digits_net, rows, client, tmp_path):
    x, t = rows
    ref = jsma(digits_net, x, t, upsilon=0.3)
    calls = []
    res = jsma(digits_net, x, t, upsilon=0.3, scheduler=client, shard_size=5,
               shard_dir=tmp_path, progress=lambda *a: calls.append(a))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(res, f), getattr(ref, f), err_msg=f)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        f"shard-{i:05d}.npz" for i in range(4)]
    # Progress counts every shard from every worker, with the running success count.
    assert [c[0] for c in calls][-1] == 16 and len(calls) == 4
    assert calls[-1][2] == ref.success.sum()


def test_interrupted_run_resumes_without_recomputing(digits_net, rows, client, tmp_path,
                                                     caplog):
    x, t = rows
    ref = jsma(digits_net, x, t, upsilon=0.3)

    class Stop(Exception):
        pass

    def stop_after_two(done, total, n_success):
        if done >= 8:
            raise Stop

    with pytest.raises(Stop):
        jsma(digits_net, x, t, upsilon=0.3, scheduler=client, shard_size=4,
             shard_dir=tmp_path, progress=stop_after_two)
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*.npz")}
    assert 2 <= len(written) < 4
    with caplog.at_level(logging.DEBUG, logger="fwdderiv.distributed"):
        res = jsma(digits_net, x, t, upsilon=0.3, scheduler=client, shard_size=4,
                   shard_dir=tmp_path)
    msg = [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()]
    assert msg == [f"{len(written)} of 4 shards resumed from {tmp_path}; submitting "
                   f"{4 - len(written)}"]
    for name, mtime in written.items():
        assert (tmp_path / name).stat().st_mtime_ns == mtime      # not rewritten
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(res, f), getattr(ref, f), err_msg=f)
    # Other settings do not reuse the shards (fingerprint mismatch: all recomputed).
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fwdderiv.distributed"):
        other = jsma(digits_net, x, t, upsilon=0.2, shard_size=4, shard_dir=tmp_path)
    assert any("0 of 4 shards resumed" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(other.x_adv, jsma(digits_net, x, t, upsilon=0.2).x_adv)


def test_workers_must_be_a_positive_int(digits_net, rows):
    x, t = rows
    with pytest.raises(ValueError, match="workers"):
        jsma(digits_net, x, t, workers=0)
