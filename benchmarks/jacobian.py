"""Input-Jacobian benchmark: fwdderiv against PyTorch, JAX and finite differences.

Run from the repository root: ``python -m benchmarks.jacobian --help``.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks import cases, peers, report, runner

REPO = Path(__file__).resolve().parents[1]

#: Agreement tolerance relative to max|J_ref|: (exact or fd, dtype) -> rtol.
TOLERANCE = {("exact", "float64"): 1e-9, ("exact", "float32"): 1e-4,
             ("fd", "float64"): 1e-5, ("fd", "float32"): 5e-2}
#: Central differences also get ``FD_ROUNDING * eps * max|F| / h``: the rounding error of
#: F itself divided by the step, which dominates in float32 when J is small.
FD_ROUNDING = 10.0
#: Central differences may miss the tolerance on this share of the entries: a ReLU whose
#: pre-activation lies within the step of zero bends the difference quotient (about 0.5%
#: of the entries of the MNIST convnet in float64). A translation or engine bug shows up
#: in nearly every entry.
FD_OUTLIER_SHARE = 0.02

EPILOG = """
methods (--methods, all by default):
{methods}

Every peer differentiates f(x) = net(x[None])[0] with the fwdderiv model's own weights
(translated layer by layer: benchmarks/peers.py). Each case is checked once against
fwdderiv's float64 forward-mode Jacobian of the same input; a difference above the
tolerance (relative to max|J|: exact methods 1e-9 float64 / 1e-4 float32, central
differences 1e-5 / 5e-2, plus 10 * eps * max|F| / h for F's own rounding; central
differences may miss it on up to 2% of the entries, for ReLU kinks within the step) is
printed as DISAGREE and makes the exit status 2.

Input: uniform [0, 1) float32 from --seed; float64 cases use the same values.

Timing: each case runs in a fresh worker process (python -m benchmarks.runner) unless
--in-process. The worker builds the model, warms up with two calls on one example, for
JAX also compiles ahead of time for the full batch (XLA compiles per shape), then times
up to --repeats calls within --budget seconds and reports the median, in ms for the
whole batch. "compile ms" (never in the median) is the first call minus a steady call
(Numba compile or cache load, PyTorch set-up), or JAX's compile of the full shape.

Memory: the worker trims the heap, resets the kernel's peak-RSS mark after warm-up and
reports the peak resident memory of the timed calls above that baseline (result
included). The parent
also polls the worker's RSS and kills it above --max-peer-memory (peers) or 90% of RAM
(fwdderiv). A peer case is skipped, with the reason printed, if an analytic estimate
(benchmarks/cases.py) is above twice --max-peer-memory, or if one example measured
first, times the batch, is above it (torch vmap(jacfwd) at float64 B=128 on LeNet-5:
about 28 GiB).

FLOPs: dense count of conv and linear layers, 2 per multiply-add, per tangent direction
(conv: 2*Cout*Cin/groups*kh*kw*Hout*Wout; linear: 2*out*in); forward mode does D+1
passes of that, reverse mode K+1, central differences 2*D (D inputs, K outputs).
GFLOP/s compares to np.matmul of two n x n matrices timed in the same run.

Missing frameworks (or --without torch,jax) give rows with status "missing"; without
torch, central differences use fwdderiv's NumPy forward passes (said in the detail).

examples:
  python -m benchmarks.jacobian                          # full run, text table
  python -m benchmarks.jacobian --quick                  # lenet5, B=1,16, 2 repeats
  python -m benchmarks.jacobian --scaling --json run.json --format markdown
  python -m benchmarks.jacobian --from-json run.json --format markdown
"""


def _csv(kind):
    def parse(text):
        return [kind(v) for v in text.split(",") if v.strip()] if text else []
    return parse


def build_parser():
    methods = "\n".join(f"  {m:<13} {d}" for m, d in peers.METHOD_DOC.items())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.jacobian",
        description=textwrap.fill(
            "Time input Jacobians dF/dx of fwdderiv (forward and reverse mode) and its "
            "peers (torch.func, JAX, central differences) side by side on the same models "
            "and weights; print medians, ratios to fwdderiv's forward mode, GFLOP/s "
            "against a GEMM peak, peak memory and the agreement with fwdderiv's float64 "
            "Jacobian. Progress goes to stderr, tables to stdout.", 88),
        epilog=EPILOG.format(methods=methods),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--models", type=_csv(str), default=list(cases.MODELS),
      help="comma list of %s (default: all)" % ",".join(cases.MODELS))
    a("--batch", type=_csv(int), default=[1, 16, 128], help="batch sizes (default 1,16,128)")
    a("--dtype", type=_csv(str), default=["float32", "float64"],
      help="float32,float64 (default both)")
    a("--methods", type=_csv(str), default=list(peers.METHODS),
      help="subset of the methods below (default: all)")
    a("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    a("--budget", type=float, default=20.0,
      help="stop timing a case after this many seconds, keeping at least one call "
           "(default 20)")
    a("--quick", action="store_true",
      help="lenet5 only, batches 1,16, 2 repeats, 10 s budget, smaller GEMM "
           "(explicit --models/--batch/--repeats still win)")
    a("--max-peer-memory", type=float, default=None, metavar="GIB",
      help="memory limit of a peer case: skipped if estimated (analytically, or from "
           "one example times the batch) above it, killed if it gets there anyway "
           "(default: half the machine's RAM)")
    a("--without", type=_csv(str), default=[],
      help="treat these frameworks as not installed (torch,jax): shows the 'missing' rows")
    a("--in-process", action="store_true",
      help="run every case in this process (faster start; memory numbers less reliable)")
    a("--threads", type=int, default=None, metavar="N",
      help="threads for every method: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS in the workers "
           "(PyTorch follows OMP_NUM_THREADS), XLA's single-threaded CPU flags for N=1 "
           "(JAX has no exact control for N>1), and the GEMM peak via threadpoolctl if "
           "installed; default: each library's own default (all cores); workers only, "
           "not --in-process")
    a("--timeout", type=float, default=1800.0, help="seconds per worker (default 1800)")
    a("--scaling", action="store_true",
      help="also run the scaling sweeps: a small convnet (conv 4@3, pool, conv 8@3, "
           "pool, fc 10) at input sides --sides (batch --side-batch) and MLPs with "
           "--depths hidden layers of 256 (batch --depth-batch); methods fwdderiv-fwd, "
           "fwdderiv-rev, torch-jacfwd; first --dtype only")
    a("--scaling-only", action="store_true", help="run only the scaling sweeps")
    a("--sides", type=_csv(int), default=list(cases.SCALING_SIDES),
      help="input sides of the side sweep (default %s)" % ",".join(map(str, cases.SCALING_SIDES)))
    a("--depths", type=_csv(int), default=list(cases.SCALING_DEPTHS),
      help="hidden-layer counts of the depth sweep (default %s)"
      % ",".join(map(str, cases.SCALING_DEPTHS)))
    a("--side-batch", type=int, default=1, help="batch of the side sweep (default 1)")
    a("--depth-batch", type=int, default=16, help="batch of the depth sweep (default 16)")
    a("--gemm-size", type=int, default=None, metavar="N",
      help="n of the n x n np.matmul that measures the GEMM peak (default 2048, "
           "--quick 1024)")
    a("--seed", type=int, default=0, help="weight and input seed (default 0)")
    a("--json", metavar="PATH", help="write every number (and the machine) as JSON")
    a("--format", choices=("text", "markdown"), default="text",
      help="table format on stdout (markdown: paste into the README)")
    a("--from-json", metavar="PATH", help="print the tables of a saved run; run nothing")
    return p


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def machine_info(args):
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"numpy": np.__version__}
    for name in ("numba", "torch", "jax"):
        if peers.available(name) and name not in args.without:
            try:
                versions[name] = __import__(name).__version__
            except Exception as exc:  # broken install: report, do not crash
                versions[name] = f"import failed: {exc}"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
            "cores": os.cpu_count(), "mem_gib": _mem_total() / 2**30,
            "python": platform.python_version(), "versions": versions,
            "argv": sys.argv[1:]}


def _mem_total():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 16 * 2**30


def gemm_peak(dtype, n, repeats=5, threads=None):
    """GFLOP/s of np.matmul on two n x n matrices (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    A, B = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
    limit = contextlib.nullcontext()
    if threads:
        try:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(threads)
        except ImportError:
            log("threadpoolctl not installed: the GEMM peak uses the default thread count")
    with limit:
        A @ B
        best = min(_time_once(lambda: A @ B) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def thread_env(threads):
    """Environment variables that hold every library of a worker to ``threads``."""
    if not threads:
        return {}
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                            "=false intra_op_parallelism_threads=1").strip()
    return env


def run_worker(spec, limit_bytes, timeout, tmp, threads=None):
    """Run one case in a fresh process; return (record, J or None)."""
    stem = Path(tmp) / f'{spec["model"]}-{spec["dtype"]}-{spec["batch"]}-{spec["method"]}'
    spec = dict(spec, result_path=str(stem) + ".json", jacobian_path=str(stem) + ".npy")
    Path(str(stem) + ".spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        **thread_env(threads))
    with open(str(stem) + ".err", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.runner",
                                 str(stem) + ".spec.json"], cwd=REPO, env=env,
                                stdout=err, stderr=err)
        t0, why = time.monotonic(), None
        while proc.poll() is None:
            rss = _rss_kib(proc.pid) * 1024
            if rss > limit_bytes:
                why = ("killed", f"resident memory passed {cases.gib(limit_bytes)}")
            elif time.monotonic() - t0 > timeout:
                why = ("timeout", f"took over {timeout:.0f} s")
            if why:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        err.seek(0)
        tail = err.read()[-600:].strip()
    if why:
        return {"status": why[0], "reason": why[1]}, None
    if proc.returncode != 0:
        return {"status": "error", "reason": tail.splitlines()[-1] if tail else
                f"exit status {proc.returncode}", "stderr_tail": tail}, None
    record = json.loads(Path(spec["result_path"]).read_text())
    J = np.load(spec["jacobian_path"]) if record["status"] == "ok" else None
    return record, J


def run_case(spec, args, have, ref, stats, tmp):
    """One (model, batch, dtype, method): skip, run, and compare with ``ref()``."""
    method, dtype, batch = spec["method"], spec["dtype"], spec["batch"]
    rec = {k: spec[k] for k in ("model", "batch", "dtype", "method")}
    need = peers.METHOD_NEEDS[method]
    if need and need not in have:
        why = ("disabled by --without" if need in args.without else "not installed")
        return dict(rec, status="missing", reason=f"{need} {why}")
    itemsize = np.dtype(dtype).itemsize
    est = cases.estimate_peak_bytes(method, stats, batch, itemsize)
    rec["estimate_bytes"] = est
    is_peer = not method.startswith("fwdderiv")
    limit = args.max_peer_memory_bytes if is_peer else int(0.9 * _mem_total())
    if is_peer and est is not None and est > 2 * limit:
        return dict(rec, status="skipped", reason=(
            f"estimated {cases.gib(est)}, far above --max-peer-memory {cases.gib(limit)}"))
    spec = dict(spec, limit_bytes=limit if is_peer else None)
    if args.in_process:
        try:
            out, J = runner.measure(spec)
        except Exception as exc:  # report the failure, keep benchmarking the rest
            out, J = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}, None
    else:
        out, J = run_worker(spec, limit, args.timeout, tmp, args.threads)
    rec.update(out)
    if J is not None:
        try:
            ref = ref()
        except Exception as exc:  # the engine failed: keep the timing, flag the row
            log(f"!!! fwdderiv float64 reference failed: {type(exc).__name__}: {exc}")
            return dict(rec, agree=False, max_abs_diff=float("nan"), over_tol=0,
                        J_size=int(J.size), tol=float("nan"), ratio=None, gflops=None,
                        reason=f"no reference: {type(exc).__name__}: {exc}")
        kind = "fd" if method == "fd-central" else "exact"
        scale = float(np.abs(ref.J).max())
        rec["max_abs_ref"] = scale
        rec["tol"] = TOLERANCE[(kind, dtype)] * max(scale, 1e-30)
        if kind == "fd":
            rec["tol"] += (FD_ROUNDING * np.finfo(dtype).eps * ref.max_out
                           / peers.FD_STEP[dtype])
        rec["J_size"] = int(ref.J.size)
        if J.shape != ref.J.shape:
            rec.update(agree=False, max_abs_diff=float("inf"), over_tol=int(ref.J.size),
                       reason=f"Jacobian shape {J.shape}, expected {ref.J.shape}")
        else:
            diff = np.abs(J.astype(np.float64) - ref.J)
            rec["max_abs_diff"] = float(diff.max())
            rec["over_tol"] = int((diff > rec["tol"]).sum())
            allowed = FD_OUTLIER_SHARE * diff.size if kind == "fd" else 0
            rec["agree"] = bool(rec["over_tol"] <= allowed)
        flop = cases.method_flop(method, stats, batch)
        rec["gflop"] = flop / 1e9
        rec["gflops"] = flop / (rec["median_ms"] * 1e6)
        rec["pct_peak"] = 100 * rec["gflops"] / args.peak[dtype]
    return rec


def _progress(i, n, rec):
    head = f'[{i}/{n}] {rec["model"]} B={rec["batch"]} {rec["dtype"]} {rec["method"]}'
    if rec["status"] != "ok":
        tail = rec.get("stderr_tail")
        return f'{head}: {rec["status"]} ({rec.get("reason", "")})' + (
            "\n  worker stderr:\n  " + tail.replace("\n", "\n  ") if tail else "")
    mem = rec.get("peak_bytes")
    line = (f'{head}: {rec["median_ms"]:.1f} ms (median of {len(rec["times_ms"])}), compile '
            f'{rec["compile_ms"]:.0f} ms, peak {mem / 2**20:.0f} MiB, '
            f'max abs diff {rec["max_abs_diff"]:.1e}')
    if rec["over_tol"]:
        line += f' ({rec["over_tol"]} of {rec["J_size"]} entries above tol {rec["tol"]:.1e})'
    if not rec["agree"]:
        line += (f'\n!!! DISAGREE with fwdderiv float64: max abs diff '
                 f'{rec["max_abs_diff"]:.2e} > tol {rec["tol"]:.1e}')
    return line


def run_grid(models, batches, dtypes, methods, args, have, tmp, extra=None):
    """Run every case of a grid; one float64 fwdderiv reference per (model, batch)."""
    records = []
    total = len(models) * len(batches) * len(dtypes) * len(methods)
    for model in models:
        net, in_shape = cases.build_model(model, seed=args.seed)
        stats = cases.model_stats(net, in_shape)
        args.stats[model] = {k: v for k, v in stats.items()}
        for batch in batches:
            ref = _reference(net, model, cases.make_input(in_shape, batch, seed=args.seed))
            for dtype in dtypes:
                for method in methods:
                    spec = dict(method=method, model=model, batch=batch, dtype=dtype,
                                seed=args.seed, repeats=args.repeats, budget_s=args.budget,
                                have=sorted(have))
                    rec = run_case(spec, args, have, ref, stats, tmp)
                    rec.update(extra(model) if extra else {})
                    records.append(rec)
                    log(_progress(len(records), total, rec))
    return records


def _reference(net, model, x):
    """A function computing fwdderiv's float64 forward Jacobian of ``x`` on first call."""
    cache = []

    def get():
        if not cache:
            t0 = time.perf_counter()
            y, J = net.jacobian(x.astype(np.float64), mode="forward", return_output=True)
            cache.append(SimpleNamespace(J=np.asarray(J), max_out=float(np.abs(y).max())))
            log(f"reference {model} B={len(x)}: fwdderiv float64 forward, "
                f"{time.perf_counter() - t0:.1f} s")
        return cache[0]
    return get


def add_ratios(records):
    """ratio = median / fwdderiv-fwd median of the same model, batch and dtype."""
    base = {(r["model"], r["batch"], r["dtype"]): r["median_ms"] for r in records
            if r["method"] == "fwdderiv-fwd" and r["status"] == "ok"}
    for r in records:
        b = base.get((r["model"], r["batch"], r["dtype"]))
        r["ratio"] = r["median_ms"] / b if b and r["status"] == "ok" else None


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.from_json:
        sys.stdout.write(report.render(json.loads(Path(args.from_json).read_text()), args.format))
        return 0
    given = set(a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv))
    if args.quick:
        args.models = args.models if "--models" in given else ["lenet5"]
        args.batch = args.batch if "--batch" in given else [1, 16]
        args.repeats = args.repeats if "--repeats" in given else 2
        args.budget = args.budget if "--budget" in given else 10.0
    bad = [m for m in args.methods if m not in peers.METHODS]
    bad += [d for d in args.dtype if d not in ("float32", "float64")]
    bad += [m for m in args.models if m not in cases.MODELS]
    if bad:
        build_parser().error(f"unknown value(s) {bad}; see --help for the choices")
    have = {f for f in ("torch", "jax") if peers.available(f) and f not in args.without}
    args.max_peer_memory_bytes = int((args.max_peer_memory or _mem_total() / 2**30 / 2) * 2**30)
    meta = machine_info(args)
    log(f'machine: {meta["cpu"]}, {meta["cores"]} cores; frameworks: {meta["versions"]}')
    n = args.gemm_size or (1024 if args.quick else 2048)
    args.peak = {d: gemm_peak(d, n, threads=args.threads) for d in ("float32", "float64")}
    meta["threads"] = args.threads or "library defaults"
    from fwdderiv.process import tuned       # every worker tunes alike (benchmarks/__init__)
    meta["allocator"] = ("glibc thresholds raised by fwdderiv.tune_process (all methods)"
                         if tuned()["allocator"] else "system default")
    meta["gemm_peak_gflops"] = args.peak
    meta["gemm_n"] = n
    meta["memory_note"] = (
        "in-process: allocator caches can hide memory" if args.in_process else
        "fresh worker per case, peak RSS of the timed calls above the post-warm-up baseline")
    meta["max_peer_memory_bytes"] = args.max_peer_memory_bytes
    log("GEMM peak: " + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in args.peak.items()))
    args.stats = {}
    doc = {"meta": meta, "models": args.stats, "results": [], "scaling": []}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fwdderiv-bench-") as tmp:
        if not args.scaling_only:
            doc["results"] = run_grid(args.models, args.batch, args.dtype, args.methods,
                                      args, have, tmp)
            add_ratios(doc["results"])
        if args.scaling or args.scaling_only:
            doc["scaling"] = run_scaling(args, have, tmp)
    meta["duration_s"] = time.perf_counter() - t_start
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, default=_jsonable))
        log(f"wrote {args.json}")
    sys.stdout.write(report.render(doc, args.format))
    disagree = [r for r in doc["results"] + doc["scaling"]
                if r["status"] == "ok" and not r["agree"]]
    return 2 if disagree else 0


def run_scaling(args, have, tmp):
    """Side sweep (small convnet) and depth sweep (MLP) of fwd, rev and torch jacfwd."""
    methods = [m for m in ("fwdderiv-fwd", "fwdderiv-rev", "torch-jacfwd")
               if m in args.methods]
    dtype = args.dtype[:1] or ["float32"]
    out = []
    for sweep, values, batch in (("side", args.sides, args.side_batch),
                                 ("depth", args.depths, args.depth_batch)):
        for v in values:
            model = f"smallconv{v}" if sweep == "side" else f"mlp{v}"

            def extra(m, sweep=sweep, v=v):
                s = args.stats[m]
                return {"sweep": sweep, "param": v, "D": s["D"],
                        "gflop_example": (s["D"] + 1) * s["flop_per_direction"] / 1e9}
            out += run_grid([model], [batch], dtype, methods, args, have, tmp, extra)
    return out


def _jsonable(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


if __name__ == "__main__":
    sys.exit(main())
