"""The allocator tuning of fwdderiv._malloc, in fresh processes (it is process-wide)."""
import json
import os
import subprocess
import sys


PROBE = """
import json, resource, numpy as np, fwdderiv as fd
net = fd.models.lenet5()
x = np.random.default_rng(0).random((16, 1, 32, 32))
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.jacobian(x, mode="reverse")
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": fd.config.MALLOC_TUNED, "faults": faults}))
"""


def probe(env_value):
    env = dict(os.environ)
    env.pop("FWDDERIV_TUNE_MALLOC", None)
    if env_value is not None:
        env["FWDDERIV_TUNE_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_repeated_jacobians_stop_faulting_pages_in():
    tuned = probe(None)
    if not sys.platform.startswith("linux"):      # glibc only: elsewhere nothing changes
        assert tuned["tuned"] is False
        return
    assert tuned["tuned"] is True
    # once warm, the arrays come from memory the process kept: a 16-example reverse
    # Jacobian allocates ~11 MB per call, 2,700 pages faulted in per call when untuned
    assert max(tuned["faults"][2:]) < 100, tuned
    assert min(probe("0")["faults"][2:]) > 1000


def test_the_environment_can_switch_it_off():
    assert probe("0")["tuned"] is False
