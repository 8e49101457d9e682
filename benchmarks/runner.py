"""Measure one benchmark case: time, first-call overhead, peak memory, the Jacobian.

Run in-process by :mod:`benchmarks.jacobian` (``--in-process``) or, by default, as a
fresh worker process per case::

    python -m benchmarks.runner spec.json

``spec.json`` holds the case (method, model, batch, dtype, repeats, time budget,
frameworks present, where to write the result and the Jacobian); the worker writes a
JSON record and ``J`` as ``.npy``.

Peak memory: before each measured stretch the worker returns freed heap pages to the
kernel (glibc ``malloc_trim(0)``), resets the kernel's high-water mark (``echo 5 >
/proc/self/clear_refs``) and notes its resident set as the baseline; the peak is
``VmHWM - baseline``: the extra resident memory of a Jacobian call, result included,
with imports, model, compiled code and warm-up outside it. JAX is compiled ahead of time
(``jit(...).lower(x).compile()``) so its first run on the timed shape is inside the
measured stretch. Where clear_refs is not available the worker falls back to
``ru_maxrss`` (which then also counts the warm-up) and says so.
"""
import ctypes
import ctypes.util
import json
import os
import resource
import sys
import time

import numpy as np

from benchmarks import cases, peers


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim_heap():
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib(reset_ok):
    if reset_ok:
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm, "VmHWM after clear_refs"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss (includes warm-up)"


def _timed(fn, arg):
    t0 = time.perf_counter()
    out = fn(arg)
    return out, (time.perf_counter() - t0) * 1e3


def _peak_of(fn, arg):
    """Run ``fn(arg)`` once; return (result, ms, extra resident KiB, how measured)."""
    _trim_heap()
    reset_ok = _reset_peak()
    base = _status_kib("VmRSS") or 0
    out, ms = _timed(fn, arg)
    peak, how = _peak_kib(reset_ok)
    return out, ms, max(0, peak - base), how


def measure(spec):
    """Run one case and return its record (and the Jacobian as NumPy).

    Steps: build the model and the method; call it twice on the first example (the
    first call compiles: Numba or cache load, JAX tracing and XLA, PyTorch lazy set-up;
    the second is the memory probe); extrapolate the probe's peak to the batch and give
    up with status "skipped" if that passes ``limit_bytes``; compile JAX ahead of time
    for the full shape; then time up to ``repeats`` calls within ``budget_s`` seconds,
    the peak memory taken over them.

    Parameters
    ----------
    spec : dict
        ``method, model, batch, dtype, seed, repeats, budget_s, have`` (frameworks
        treated as installed), ``limit_bytes`` (None: no probe limit).

    Returns
    -------
    record : dict
        ``status`` ("ok" or "skipped" with ``reason``), ``times_ms``, ``median_ms``,
        ``first_ms`` (first call, one example), ``compile_ms`` (first minus second call
        on one example; for JAX the ahead-of-time compile of the full shape),
        ``peak_bytes`` (timed calls), ``probe_peak_bytes`` (one example),
        ``baseline_bytes``, ``memory_method``, ``detail``.
    J : ndarray of shape (N, *S_out, *S_in), or None when skipped
    """
    t_setup = time.perf_counter()
    batch = spec["batch"]
    net, in_shape = cases.build_model(spec["model"], seed=spec.get("seed", 0))
    stats = cases.model_stats(net, in_shape)
    x = cases.make_input(in_shape, batch, seed=spec.get("seed", 0))
    method = peers.make_method(spec["method"], net, spec["dtype"], stats, set(spec["have"]))
    xp = method.prepare(x)
    x1 = method.prepare(x[:1])
    aot_ms = method.compile(x1) or 0.0
    J, first = _timed(method.run, x1)
    del J
    J, second, probe_kib, how = _peak_of(method.run, x1)
    del J
    record = {"first_ms": first, "compile_ms": aot_ms + max(0.0, first - second),
              "probe_peak_bytes": probe_kib * 1024, "detail": method.detail,
              "label": method.label or method.name,
              "status": "ok"}
    limit = spec.get("limit_bytes")
    guess = probe_kib * 1024 * batch
    if limit is not None and batch > 1 and guess > limit:
        record.update(status="skipped", reason=(
            f"one example used {probe_kib / 1024:.0f} MiB, so B={batch} needs about "
            f"{cases.gib(guess)} > {cases.gib(limit)}"))
        return record, None
    compile_ms = method.compile(xp)
    if compile_ms is not None:
        record["compile_ms"] = compile_ms
    record["setup_s"] = time.perf_counter() - t_setup
    _trim_heap()
    reset_ok = _reset_peak()
    base_kib = _status_kib("VmRSS") or 0
    times = []
    deadline = time.perf_counter() + spec.get("budget_s", 30.0)
    while len(times) < max(1, spec.get("repeats", 3)):
        J = None
        J, ms = _timed(method.run, xp)
        times.append(ms)
        if time.perf_counter() > deadline:
            break
    peak_kib, how = _peak_kib(reset_ok)
    record.update({
        "times_ms": times, "median_ms": float(np.median(times)),
        "peak_bytes": max(0, peak_kib - base_kib) * 1024,
        "baseline_bytes": base_kib * 1024, "memory_method": how,
    })
    return record, np.asarray(method.to_numpy(J))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    record, J = measure(spec)
    if J is not None:
        np.save(spec["jacobian_path"], J)
    tmp = spec["result_path"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, spec["result_path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
