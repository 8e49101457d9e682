"""Fixtures for the data tests: small fake MNIST files and a loopback HTTP server."""
import functools
import http.server
import threading

import numpy as np
import pytest

from fwdderiv.datasets import write_idx


def make_mnist_files(folder, split="test", n=12, gz=True, seed=0, size=28):
    """Write a small MNIST-format split into ``folder``; return (images, labels) arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = {"test": "t10k", "train": "train"}[split]
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture
def fake_mnist():
    """The :func:`make_mnist_files` helper."""
    return make_mnist_files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        # /short/<name>: announce more bytes than are sent, like a dropped connection.
        if self.path.startswith("/short/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b partial")
            return
        super().do_GET()


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """Serve ``tmp_path / "www"`` on 127.0.0.1 (free port); yield (base_url, folder)."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def dead_url():
    """A loopback URL on which nothing listens (connection refused at once)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
