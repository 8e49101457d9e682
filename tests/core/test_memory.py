"""Memory: max_memory is honoured and the defaults are safe. Each case runs in a fresh
process; after a warm-up call (which compiles the Numba kernels when the on-disk cache is
cold) the kernel's high-water mark is reset, so the peak measured belongs to the Jacobian
call alone (Linux /proc)."""
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
import fwdderiv as fd

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

args = json.loads(sys.argv[1])
if args["model"] == "lenet5":
    net = fd.models.lenet5()
else:   # a small convnet on 3x224x224 images
    net = fd.Sequential([
        fd.Conv2d(3, 8, 3, stride=2, padding=1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Conv2d(8, 16, 3, stride=2, padding=1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Conv2d(16, 16, 3, padding=1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Flatten(), fd.Linear(16 * 7 * 7, 10), fd.Softmax()])
x = np.random.default_rng(0).random([args["batch"]] + args["shape"]).astype(args["dtype"])
kw = {"mode": args["mode"], "max_memory": args["max_memory"]}
net.jacobian(x[:1], **kw)   # compile the kernels first (LLVM's memory is not the call's)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")            # reset the high-water mark VmHWM to the current RSS
base = status("VmRSS")
J = net.jacobian(x, **kw)
peak = status("VmHWM")
check = float(np.abs(J[:1] - net.jacobian(x[:1], mode="reverse")).max() / np.abs(J[:1]).max())
print(json.dumps({"delta": peak - base, "peak": peak, "result": J.nbytes, "shape": J.shape,
                  "rel_err": check}))
"""


def run(**args):
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet5_batch_128_stays_under_1_gib_by_default(dtype):
    r = run(model="lenet5", shape=[1, 32, 32], batch=128, dtype=dtype, mode="forward",
            max_memory=None)
    assert r["shape"] == [128, 10, 1, 32, 32]
    assert r["peak"] < 2**30
    assert r["rel_err"] < (1e-4 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_max_memory_is_honoured(mode):
    budget = 32 * 2**20
    r = run(model="lenet5", shape=[1, 32, 32], batch=128, dtype="float64", mode=mode,
            max_memory=budget)
    model_bytes = 62_000 * 4            # LeNet-5's parameters, float32
    assert r["delta"] <= 1.1 * (budget + r["result"] + model_bytes)


def test_default_is_safe_for_a_3x224x224_input():
    r = run(model="convnet224", shape=[3, 224, 224], batch=2, dtype="float32",
            mode="forward", max_memory=None)
    assert r["shape"] == [2, 10, 3, 224, 224]
    assert r["peak"] < 2 * 2**30
    assert r["rel_err"] < 1e-4
