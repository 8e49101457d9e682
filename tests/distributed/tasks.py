"""Tasks for the sharded-run tests, in a module the worker processes can import."""
import os
from pathlib import Path

import numpy as np


def counted_square(shared, part, start, folder, fail_at):
    """Squares of the shard's rows; leaves one file in ``folder`` per computation
    (``<start>-<pid>-<n>``) and raises on the shard starting at ``fail_at`` the first
    time it is reached (a flag file remembers it)."""
    folder = Path(folder)
    flag = folder / f"failed-{fail_at}"
    if start == fail_at and not flag.exists():
        flag.write_text("")
        raise RuntimeError(f"shard at {start} fails once")
    n = len(list(folder.glob(f"{start}-*")))
    (folder / f"{start}-{os.getpid()}-{n}").write_text("")
    return np.asarray(part) ** 2 + shared


def setting_result(shared, part, start):
    """One result per shard of settings (list items): a 0-d value (their sum times
    ``shared``) and a row (the first setting, the shard's start)."""
    return {"value": np.float64(sum(part) * shared), "row": np.array([[part[0], start]])}


def slow_rows(shared, part, start, seconds):
    import time
    time.sleep(seconds)
    return np.asarray(part)


def memory_status():
    """(VmRSS, VmHWM) of this process in bytes, then the peak reset to the current RSS."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")
    return memory_status()
