"""Process-wide tuning (fwdderiv.process) is opt-in, and works when asked for, in fresh
processes (it is process-wide)."""
import json
import os
import subprocess
import sys

PROBE = """
import json, resource, numpy as np, fwdderiv as fd
{opt_in}
net = fd.models.lenet5()
x = np.random.default_rng(0).random((16, 1, 32, 32))
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.jacobian(x, mode="reverse")
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"tuned": fd.process.tuned(), "faults": faults}}))
"""


def run(code, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FWDDERIV_TUNE_PROCESS", "NUMBA_THREADING_LAYER")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_tuned_allocator_stops_repeated_jacobians_faulting_pages_in():
    tuned = run(PROBE.format(opt_in="fd.tune_process()"))
    plain = run(PROBE.format(opt_in=""))
    assert plain["tuned"] == {"allocator": False, "threading_layer": False}
    if not sys.platform.startswith("linux"):      # glibc only: elsewhere nothing changes
        assert tuned["tuned"]["allocator"] is False
        return
    assert tuned["tuned"]["allocator"] is True
    # once warm, the arrays come from memory the process kept: a 16-example reverse
    # Jacobian allocates ~11 MB per call, ~2,700 pages faulted in per call untuned
    assert max(tuned["faults"][2:]) < 100, tuned
    assert min(plain["faults"][2:]) > 1000, plain


def test_the_environment_variable_opts_in_at_import():
    assert run(PROBE.format(opt_in=""), FWDDERIV_TUNE_PROCESS="1")["tuned"]["allocator"] \
        is sys.platform.startswith("linux")


IMPORT_PROBE = r"""
import ctypes, json, resource, numba
before = list(numba.config.THREADING_LAYER_PRIORITY)
import fwdderiv as fd, numpy as np
fd.models.lenet5().jacobian(np.zeros((2, 1, 32, 32)))      # a real call, kernels included
after = list(numba.config.THREADING_LAYER_PRIORITY)
# glibc's default mmap threshold serves a fresh 16 MiB block with mmap and unmaps it on
# free (resident memory goes back down); fwdderiv's tuning would keep it on the heap
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
size = 16 * 2**20
p = libc.malloc(size)
ctypes.memset(p, 1, size)
held = rss()
libc.free(p)
print(json.dumps({"before": before, "after": after, "released": held - rss()}))
"""


def test_import_leaves_numba_and_the_allocator_as_they_were():
    out = run(IMPORT_PROBE)
    assert out["after"] == out["before"]
    if sys.platform.startswith("linux"):
        assert out["released"] >= 15 * 2**20, out      # the block went back to the kernel
