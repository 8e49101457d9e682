"""Run hostile cases in a process whose address space is limited (used by
tests/test_hostile.py).

Usage: ``python -m tests.hostile_worker LIMIT_MB CASES.json``. The limit is set before
fwdderiv is imported. Each case is run and reported as one JSON line:
``{"id", "outcome": "ok" | "error", "type", "message"}``; an exception that is not a
``ValueError``/``TypeError``/``OSError`` (a ``MemoryError`` above all) is reported with
``"outcome": "crash"`` and its traceback.
"""
import contextlib
import io
import json
import resource
import sys
import traceback


def _limit(mb):
    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


def _array(spec):
    import numpy as np

    if spec is None:
        return None
    if isinstance(spec, dict) and "fill" in spec:
        fill = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}.get(spec["fill"], spec["fill"])
        a = np.full(spec["shape"], 0.5, dtype=spec.get("dtype", "float64"))
        if a.size:
            a.flat[spec.get("at", 0) % a.size] = fill
        return a
    return spec                     # lists, strings, numbers: passed on as they are


def _net(name):
    import fwdderiv as fd

    if name == "classifier":
        return fd.Sequential([fd.Flatten(), fd.Linear(16, 3, seed=1), fd.Softmax()])
    if name == "image_out":
        return fd.Sequential([fd.Conv2d(1, 2, 3)])
    raise ValueError(name)


def run_case(case):
    import numpy as np
    import fwdderiv as fd

    kind = case["kind"]
    if kind == "load":
        fd.load(case["path"], **case.get("kwargs", {}))
    elif kind == "idx":
        fd.datasets.read_idx(case["path"], **case.get("kwargs", {}))
    elif kind == "mnist":
        fd.datasets.load_mnist(case["path"])
    elif kind == "jsma":
        fd.attacks.jsma(_net(case.get("net", "classifier")), _array(case["x"]),
                        _array(case["targets"]), **case.get("kwargs", {}))
    elif kind == "fit":
        fd.training.fit(_net("classifier"), _array(case["x"]), _array(case["y"]),
                        progress=False, **case.get("kwargs", {}))
    elif kind == "cli":
        from fwdderiv.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(case["argv"])
            except SystemExit as exc:       # argparse's own usage errors
                code = exc.code
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        return {"outcome": "exit", "code": code, "stderr": lines}
    else:
        raise KeyError(kind)
    return {"outcome": "ok"}


def main(argv):
    _limit(int(argv[0]))
    with open(argv[1]) as f:
        cases = json.load(f)
    import numpy  # noqa: F401  (imports count against the limit too)
    import fwdderiv  # noqa: F401
    for case in cases:
        try:
            result = run_case(case)
        except (ValueError, TypeError, OSError) as err:
            result = {"outcome": "error", "type": type(err).__name__, "message": str(err)}
        except BaseException as err:                      # noqa: B902 (reported)
            result = {"outcome": "crash", "type": type(err).__name__,
                      "message": traceback.format_exc()[-2000:]}
        result["id"] = case["id"]
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
