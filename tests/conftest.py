"""Shared pytest fixtures: where the real MNIST files are, and a per-session cache."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir():
    env = os.environ.get("FWDDERIV_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def pytest_configure(config):
    # Trained models are cached per test session, never in the user's cache directory,
    # so a run is independent of what an earlier run left behind.
    if "FWDDERIV_CACHE_DIR" not in os.environ:
        import tempfile
        os.environ["FWDDERIV_CACHE_DIR"] = tempfile.mkdtemp(prefix="fwdderiv-test-cache-")


@pytest.fixture(scope="session")
def mnist_dir():
    """Directory holding the real MNIST test set (t10k IDX files, gzip).

    CI clones the repository with ``shared/`` beside it; set FWDDERIV_SHARED to point
    elsewhere. A missing directory is an error, not a skip: the tests that use it are
    required by the issues.
    """
    path = _shared_dir() / "data" / "mnist"
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(
            f"MNIST test files not found in {path}; put the shared/ folder beside the "
            "repository or set FWDDERIV_SHARED to its location")
    return path


from hypothesis import HealthCheck, settings  # noqa: E402

# Derivative checks are numeric, not timing-sensitive: no deadline. In CI the examples are
# derandomized so a run is reproducible.
settings.register_profile(
    "fwdderiv", deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")))
settings.load_profile("fwdderiv")
