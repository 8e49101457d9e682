"""``net.jacobian(x, out=...)``: the Jacobian written chunk by chunk into the caller's
array (a ``numpy.memmap``, or any array-like with slice assignment such as a Zarr array)
equals the in-memory one in both modes, and a result larger than memory is refused before
any work, naming ``out=``."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core import jacobian as driver


class ArrayLike:
    """An array-like that is not an ndarray (as a Zarr array): shape, dtype, slice
    assignment of whole blocks; records the largest block written."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.data = np.full(shape, np.nan, dtype)
        self.largest = 0

    def __setitem__(self, index, value):
        value = np.asarray(value)
        self.largest = max(self.largest, value.size)
        if index is not Ellipsis:
            assert all(isinstance(i, slice) for i in index), index
            assert value.shape == self.data[index].shape, (value.shape, index)
        self.data[index] = value


def conv_net():
    return fd.Sequential([fd.Conv2d(2, 3, 3, seed=0), fd.ReLU(), fd.MaxPool2d(2),
                          fd.Flatten(), fd.Linear(12, 5, seed=1), fd.Softmax()])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((5, 2, 6, 6))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("max_memory", [None, 20_000])
def test_a_memmap_out_equals_the_in_memory_jacobian(tmp_path, x, mode, max_memory):
    net = conv_net()
    expect = net.jacobian(x, mode=mode)
    out = np.lib.format.open_memmap(tmp_path / "J.npy", mode="w+", dtype=x.dtype,
                                    shape=expect.shape)
    y, J = net.jacobian(x, mode=mode, max_memory=max_memory, out=out, return_output=True)
    assert J is out
    np.testing.assert_allclose(J, expect, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y, net(x), rtol=1e-13)
    out.flush()
    np.testing.assert_allclose(np.load(tmp_path / "J.npy"), expect, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_an_array_like_is_filled_block_by_block(x, mode):
    """Small chunks (a budget below one example's Jacobian): the flat ranges of
    directions or outputs reach the array as rectangular blocks, each smaller than the
    result."""
    net = conv_net()
    expect = net.jacobian(x, mode=mode)
    out = ArrayLike(expect.shape, np.float64)
    assert net.jacobian(x, mode=mode, max_memory=10_000, out=out) is out
    np.testing.assert_allclose(out.data, expect, rtol=1e-12, atol=1e-15)
    assert out.largest < expect[0].size


def test_a_float32_out_takes_a_float64_jacobian(x):
    net = conv_net()
    out = np.zeros((5, 5, 2, 6, 6), np.float32)
    net.jacobian(x, out=out, max_memory=20_000)
    np.testing.assert_allclose(out, net.jacobian(x), rtol=1e-6, atol=1e-9)


def test_flat_blocks_cover_a_range_with_rectangles():
    for shape in [(7,), (2, 3), (3, 4, 5), (2, 1, 3, 2)]:
        n = int(np.prod(shape))
        flat = np.arange(n).reshape(shape)
        for a in range(n):
            for b in range(a + 1, n + 1):
                seen = [flat[idx].ravel() for idx, p, q in driver.flat_blocks(shape, a, b)]
                np.testing.assert_array_equal(np.concatenate(seen), np.arange(a, b))
                assert len(seen) <= 2 * len(shape)


def test_bad_out_is_refused_before_any_work(x, monkeypatch):
    net = conv_net()
    monkeypatch.setattr(driver, "plan_chunks", lambda *a, **k: pytest.fail("worked"))
    with pytest.raises(ValueError, match=r"out= must have the Jacobian's shape .*"
                                         r"\(5, 5, 2, 6, 6\), got \(5, 5, 72\)"):
        net.jacobian(x, out=np.zeros((5, 5, 72)), windowed=False)
    with pytest.raises(TypeError, match="floating dtype, got int64"):
        net.jacobian(x, out=np.zeros((5, 5, 2, 6, 6), np.int64))
    with pytest.raises(TypeError, match="out= must be an array-like"):
        net.jacobian(x, out=[[0.0]])
    with pytest.raises(ValueError, match="intermediates=True needs mode='forward' and no"):
        net.jacobian(x, out=np.zeros((5, 5, 2, 6, 6)), intermediates=True)


def test_a_result_larger_than_memory_is_refused_before_any_work(monkeypatch, tmp_path):
    """Without out=, the result counts against the machine's memory before planning; with
    out= on disk the same call runs."""
    net = fd.Sequential([fd.Flatten(), fd.Tanh()])
    x = np.random.default_rng(1).standard_normal((40, 1, 30, 10))      # J: 40 x 300 x 300
    monkeypatch.setattr(driver, "physical_memory", lambda: 2**24)       # 16 MiB "machine"
    planned = []
    real = driver.plan_chunks
    monkeypatch.setattr(driver, "plan_chunks", lambda *a, **k: planned.append(1) or real(*a, **k))
    monkeypatch.setattr(driver, "windows_for_budget",
                        lambda *a, **k: planned.append(1) or ([], None))
    with pytest.raises(ValueError, match=r"needs 0\.0 GiB|needs 0\.\d GiB") as err:
        net.jacobian(x, mode="reverse")
    assert "pass out= an array on disk" in str(err.value) and "open_memmap" in str(err.value)
    assert not planned
    out = np.lib.format.open_memmap(tmp_path / "J.npy", mode="w+", dtype=np.float64,
                                    shape=(40, 300, 1, 30, 10))
    net.jacobian(x, out=out, max_memory=2**20)
    k = np.arange(300)
    J = out.reshape(40, 300, 300)
    np.testing.assert_allclose(J[:, k, k], 1 - np.tanh(x.reshape(40, 300)) ** 2, rtol=1e-12)
    assert planned
