"""These tests run many tiny networks: one Numba thread each (on a shared, loaded machine
the parallel kernels' thread start-up made a 5x5 convolution 40x slower)."""
import pytest

from fwdderiv.training.loop import limited_threads


@pytest.fixture(autouse=True)
def one_thread():
    with limited_threads(1):
        yield
