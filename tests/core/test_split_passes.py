"""A large reverse Jacobian splits whole passes between the cores (Graph._reverse): the
examples when there are enough, else the rows of one pass. Same numbers as one pass, up
to float rounding."""
import threading

import numba
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv import threads
from fwdderiv.core import jacobian as graph_module


def net():
    return fd.Graph([("a", fd.Conv2d(2, 4, 3, padding=1, seed=1), "input"),
                     ("b", fd.ReLU(), "a"),
                     ("c", fd.Conv2d(4, 4, 3, padding=1, seed=2), "b"),
                     ("d", fd.Add(), ["c", "b"]),
                     ("e", fd.MaxPool2d(2), "d"),
                     ("f", fd.Flatten(), "e"),
                     ("g", fd.Linear(4 * 4 * 4, 5, seed=3), "f")])


class Watch:
    """Records each pull-back of the reverse Jacobian: its examples and rows, its
    thread, and how many threads its Numba kernels may use."""

    def __init__(self, monkeypatch):
        self.pulls = []
        pull = fd.Graph._pull

        def watched(graph, caches, g, *args, **kwargs):
            self.pulls.append((g.shape[:2], threading.get_ident(), numba.get_num_threads()))
            return pull(graph, caches, g, *args, **kwargs)

        monkeypatch.setattr(fd.Graph, "_pull", watched)


@pytest.mark.parametrize("N, split", [(1, [(1, 2), (1, 3)]), (3, [(1, 5), (2, 5)])],
                         ids=["rows", "examples"])
def test_split_passes_equal_one_pass(monkeypatch, N, split):
    x = np.random.default_rng(4).normal(size=(N, 2, 8, 8))
    model = net()
    one = model.jacobian(x, mode="reverse", return_output=True)
    monkeypatch.setattr(graph_module, "SPLIT_PASSES_FROM", 0)
    monkeypatch.setattr(threads, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    concurrent = threads.kernels_run_concurrently()
    watch = Watch(monkeypatch)
    y, J = model.jacobian(x, mode="reverse", return_output=True)
    if concurrent:                    # OpenMP or TBB: two threads, one Numba thread each
        assert sorted(p[0] for p in watch.pulls) == split
        assert len({p[1] for p in watch.pulls}) == 2 and {p[2] for p in watch.pulls} == {1}
    else:                             # the workqueue layer: never two launches at once
        assert [p[0] for p in watch.pulls] == [(N, 5)]
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS      # restored
    np.testing.assert_allclose(y, one[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J, one[1], rtol=1e-12, atol=1e-15 * np.abs(one[1]).max())
    np.testing.assert_allclose(J, model.jacobian(x, mode="forward"), rtol=1e-10,
                               atol=1e-13 * np.abs(J).max())


def test_no_split_when_kernels_cannot_run_concurrently(monkeypatch):
    x = np.random.default_rng(5).normal(size=(3, 2, 8, 8))
    monkeypatch.setattr(graph_module, "SPLIT_PASSES_FROM", 0)
    monkeypatch.setattr(threads, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    monkeypatch.setattr(threads, "kernels_run_concurrently", lambda: False)
    watch = Watch(monkeypatch)
    net().jacobian(x, mode="reverse")
    assert [p[0] for p in watch.pulls] == [(3, 5)]


def test_batch_statistics_keep_the_examples_in_one_pass(monkeypatch):
    # BatchNorm's training form couples the examples: the rows are split, the examples
    # are not, and the Jacobian is the one of the whole batch's pass
    model = fd.Graph([("a", fd.Conv2d(2, 3, 3, padding=1, seed=1), "input"),
                      ("b", fd.BatchNorm2d(3), "a"),
                      ("c", fd.ReLU(), "b"),
                      ("d", fd.Flatten(), "c"),
                      ("e", fd.Linear(3 * 8 * 8, 4, seed=2), "d")])
    model["b"].training = True
    x = np.random.default_rng(6).normal(size=(4, 2, 8, 8))
    one = model.jacobian(x, mode="reverse")
    monkeypatch.setattr(graph_module, "SPLIT_PASSES_FROM", 0)
    monkeypatch.setattr(threads, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    watch = Watch(monkeypatch)
    J = model.jacobian(x, mode="reverse")
    assert all(p[0][0] == 4 for p in watch.pulls)
    if threads.kernels_run_concurrently():
        assert sorted(p[0] for p in watch.pulls) == [(4, 2), (4, 2)]
    np.testing.assert_allclose(J, one, rtol=1e-12, atol=1e-15 * np.abs(one).max())
