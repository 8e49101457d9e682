"""``fwdderiv check`` shard by shard: another framework's Jacobian against the float64
reference, each shard computing both, the report assembled from the shards' reports.

Errors are relative to the largest |J| over *all* inputs, as in one
:func:`fwdderiv.interop.check.compare` call: a first pass finds it (each shard returns
the largest |J| of every example), the second compares each shard against it. The counts
of entries beyond tolerance, explained by kinks and unexplained are sums over the shards;
the worst error per output, the positions of unexplained entries and the largest errors
are taken over the shards, with example indices counted over all inputs. A float32
Jacobian checked without ``tol`` is held to the tolerance measured on each shard (the
report gives the largest).
"""
import json

import numpy as np

from ..validation import check_int
from .cluster import connect
from .jacobians import jacobian_shard_size
from .sharded import run_sharded

__all__ = ["compare", "merge_reports"]

#: Unexplained positions listed in a report (as :func:`fwdderiv.interop.check.compare`).
MAX_POSITIONS = 100


def compare(net, x, other, *, tol=None, workers=None, scheduler=None, shard_size=None,
            progress=None):
    """:func:`fwdderiv.interop.check.compare` of ``net`` at ``x`` with ``other``, shard
    by shard on a Dask cluster (or in this process).

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S_in)
    other : array-like of shape (N, *S_out, *S_in), or callable
        The Jacobian to check (a ``numpy.memmap`` is read one shard at a time), or a
        module-level function ``other(x_rows)`` that computes it for a shard's rows on
        the worker (e.g. ``functools.partial`` of a peer framework's Jacobian), sent to
        each worker once with the network.
    tol : float, optional
        Tolerance relative to the largest |J| (default by dtype, as in ``compare``).
    workers, scheduler, shard_size, progress
        As in :func:`~fwdderiv.distributed.jacobian`.

    Returns
    -------
    dict
        The keys of ``compare``'s report, assembled by :func:`merge_reports`, and
        ``shards``, the number of shards.
    """
    x = np.asarray(x, np.float64)
    if shard_size is not None:
        check_int(shard_size, "shard_size", "distributed.compare", minimum=1)
    size = shard_size or max(1, jacobian_shard_size(net, x.shape[1:], np.float64) // 4)
    if not callable(other) and tuple(getattr(other, "shape", ())[:1]) != (len(x),):
        raise ValueError(f"distributed.compare expected other with one Jacobian per input, "
                         f"shape ({len(x)}, *S_out, *S_in), got "
                         f"{getattr(other, 'shape', type(other).__name__)}")
    with connect(workers, scheduler, "distributed.compare") as client:
        run = dict(shared=net, shard_size=size, scheduler=client, progress=progress)
        scales = run_sharded(_scale_shard, x, desc="check: scale", **run)
        scale = float(scales.max()) if scales is not None and scales.size else None
        # a callable goes to the workers once, with the network
        fn = other if callable(other) else None
        run["shared"] = (net, fn)
        reports = run_sharded(_compare_shard, x if fn else (x, other), args=(tol, scale),
                              desc="check", combine=False, **run)
    return merge_reports([json.loads(str(r)) for r in reports], size)


def _scale_shard(net, x, start):
    """Per example, the largest |J| of the float64 reference."""
    J = net.jacobian(x)
    return np.abs(J).reshape(len(x), -1).max(axis=1) if J.size else np.zeros(len(x))


def _compare_shard(shared, part, start, tol, scale):
    """One shard's report, as JSON text (a 0-d string array for the shard file)."""
    from ..interop.check import compare as compare_one
    net, other_fn = shared
    x, other = (part, other_fn(part)) if other_fn is not None else part
    report = compare_one(net, x, other, tol=tol, scale=scale)
    return np.array(json.dumps({**report, "start": int(start), "n": int(len(x))}))


def merge_reports(reports, shard_size=None):
    """One report from the reports of consecutive shards (each with ``start``, its first
    example). See the module's description for how each number is assembled.

    Parameters
    ----------
    reports : list of dict
        :func:`fwdderiv.interop.check.compare` reports, shard by shard, each with the
        index of its first example under ``start``.
    shard_size : int, optional
        Recorded in the report.

    Returns
    -------
    dict
    """
    if not reports:
        return {"ok": True, "verdict": None, "shards": 0, "beyond_tolerance": 0,
                "kink_explained": 0, "unexplained": 0, "max_abs": 0.0, "max_rel": 0.0}
    first = reports[0]
    n = sum(r["n"] for r in reports)
    if any("message" in r for r in reports):
        bad = next(r for r in reports if "message" in r)
        return {k: v for k, v in bad.items() if k not in ("start", "n")} | {
            "shards": len(reports)}
    scale = max(r["scale"] for r in reports)
    max_abs = max(r["max_abs"] for r in reports)
    out = {"shape": [n] + first["shape"][1:], "tolerance": max(r["tolerance"] for r in reports),
           "scale": scale, "dtype": first["dtype"], "max_abs": max_abs,
           "max_rel": max_abs / scale, "shards": len(reports), "shard_size": shard_size}
    if "tolerance_rule" in first:
        out["tolerance_rule"] = first["tolerance_rule"] + " (measured per shard)"
    for key in ("beyond_tolerance", "kink_explained", "unexplained"):
        out[key] = sum(r[key] for r in reports)
    out["unexplained_positions"] = [[p[0] + r["start"]] + p[1:] for r in reports
                                    for p in r["unexplained_positions"]][:MAX_POSITIONS]
    out["worst_per_output"] = _merge_worst(reports)
    if "float32" in first:
        out["float32"] = _merge_float32([r["float32"] for r in reports])
    out["ok"] = all(r["ok"] for r in reports)
    out["verdict"] = None if out["ok"] else next(r["verdict"] for r in reports if not r["ok"])
    return out


def _merge_worst(reports):
    """Per output, the shard entry with the largest error (the first on ties)."""
    worst = []
    for j, w in enumerate(reports[0]["worst_per_output"]):
        best, start = w, reports[0]["start"]
        for r in reports[1:]:
            if r["worst_per_output"][j]["abs_error"] > best["abs_error"]:
                best, start = r["worst_per_output"][j], r["start"]
        worst.append({**best, "example": best["example"] + start,
                      "rel_error": best["abs_error"] / max(r["scale"] for r in reports)})
    return worst


def _merge_float32(sides):
    out = {}
    for side in ("other", "fwdderiv"):
        parts = [s[side] for s in sides]
        out[side] = {"max_rel": max(p["max_rel"] for p in parts),
                     "beyond_tolerance": sum(p["beyond_tolerance"] for p in parts),
                     "kink_explained": sum(p["kink_explained"] for p in parts),
                     "off_reference": any(p["off_reference"] for p in parts)}
    out["disagree_max_rel"] = max(s["disagree_max_rel"] for s in sides)
    out["units_near_kinks"] = sum(s["units_near_kinks"] for s in sides)
    return out
