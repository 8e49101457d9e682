"""Tables of benchmark results: aligned text for the terminal, markdown for the README.

Both read the JSON document :mod:`benchmarks.jacobian` writes, so a saved run can be
printed again: ``python -m benchmarks.jacobian --from-json run.json --format markdown``.
"""
import math
import textwrap

from benchmarks.peers import METHOD_DOC

COLUMNS = ("model", "dtype", "B", "method", "median ms", "/ fwdderiv-fwd", "GFLOP/s",
           "% peak", "peak MiB", "compile ms", "max abs diff", "status")


def _num(v, fmt):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def _ms(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def status_text(r):
    """'ok', 'DISAGREE', or the reason a case has no number."""
    if r["status"] == "ok":
        return "ok" if r.get("agree", True) else "DISAGREE"
    return f'{r["status"]}: {r.get("reason", "")}'.rstrip(": ")


def result_rows(results):
    """Main-table rows (lists of strings), one per record, in run order."""
    rows = []
    for r in results:
        ok = r["status"] == "ok"
        rows.append([
            r["model"], r["dtype"], str(r["batch"]), r.get("label") or r["method"],
            _ms(r.get("median_ms")) if ok else "-",
            _num(r.get("ratio"), ".2f") if ok else "-",
            _num(r.get("gflops"), ".1f") if ok else "-",
            _num(r.get("pct_peak"), ".1f") if ok else "-",
            _num(r["peak_bytes"] / 2**20, ",.0f") if ok else "-",
            _ms(r.get("compile_ms")) if ok else "-",
            _num(r.get("max_abs_diff"), ".1e") if ok else "-",
            status_text(r),
        ])
    return rows


def summary_tables(results, fmt="text"):
    """Per model: methods down, (dtype, B) across, median ms and x fwdderiv-fwd in cells."""
    out = []
    for model in dict.fromkeys(r["model"] for r in results):
        rs = [r for r in results if r["model"] == model]
        cols = sorted(set((r["dtype"], r["batch"]) for r in rs))
        rows = []
        for method in dict.fromkeys(r.get("label") or r["method"] for r in rs):
            cells = {(r["dtype"], r["batch"]): r for r in rs
                     if (r.get("label") or r["method"]) == method}
            row = [method]
            for c in cols:
                r = cells.get(c)
                if r is None:
                    row.append("-")
                elif r["status"] != "ok":
                    row.append(r["status"])
                else:
                    ratio = "" if r.get("ratio") is None else f' ({r["ratio"]:.2f}x)'
                    row.append(_ms(r["median_ms"]) + ratio
                               + ("" if r.get("agree", True) else " DISAGREE"))
            rows.append(row)
        head = [f"{model}: median ms (/ fwdderiv-fwd)"] + [f"{d} B={b}" for d, b in cols]
        out.append(format_table(head, rows, fmt))
    return "\n\n".join(out)


def scaling_rows(results):
    """Scaling rows: one per (sweep, model), methods side by side, plus torch/fwdderiv."""
    order, table = [], {}
    for r in results:
        key = (r["sweep"], r["param"], r["model"], r["dtype"], r["batch"])
        if key not in table:
            order.append(key)
            table[key] = {"D": r.get("D"), "gflop": r.get("gflop_example")}
        table[key][r["method"]] = r
    rows = []
    for key in order:
        sweep, param, model, dtype, batch = key
        cell = table[key]

        def t(m):
            r = cell.get(m)
            if r is None:
                return "-"
            return _ms(r["median_ms"]) if r["status"] == "ok" else status_text(r)
        fwd, tj = cell.get("fwdderiv-fwd"), cell.get("torch-jacfwd")
        ratio = (tj["median_ms"] / fwd["median_ms"]
                 if fwd and tj and fwd["status"] == tj["status"] == "ok" else None)
        ran = [r for m, r in cell.items() if m in METHOD_DOC and r["status"] == "ok"]
        agree = "DISAGREE" if any(not r.get("agree", True) for r in ran) else "ok"
        rows.append([sweep, str(param), model, dtype, str(batch), str(cell["D"]),
                     _num(cell["gflop"], ".3f"), t("fwdderiv-fwd"), t("fwdderiv-rev"),
                     t("torch-jacfwd"), _num(ratio, ".2f"), agree if ran else "-"])
    return rows


SCALING_COLUMNS = ("sweep", "value", "model", "dtype", "B", "D", "GFLOP/example (fwd)",
                   "fwdderiv-fwd ms", "fwdderiv-rev ms", "torch-jacfwd ms",
                   "torch/fwdderiv", "agreement")


def format_table(columns, rows, fmt="text"):
    """Render ``rows`` under ``columns`` as aligned text or a markdown pipe table."""
    if fmt == "markdown":
        numeric = [all(_looks_numeric(row[i]) for row in rows) if rows else False
                   for i in range(len(columns))]
        lines = ["| " + " | ".join(columns) + " |",
                 "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    out = [line, "-" * len(line)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)


def _looks_numeric(s):
    s = s.split(" (")[0]
    return s == "-" or s.replace(",", "").replace(".", "").replace("e-", "").replace(
        "e+", "").lstrip("-").isdigit()


def render(doc, fmt="text"):
    """The whole report of a run (header, main table, legend, scaling table)."""
    meta = doc["meta"]
    peak = meta.get("gemm_peak_gflops", {})
    head = [
        f'fwdderiv Jacobian benchmark, {meta.get("date", "")}',
        f'machine: {meta.get("cpu", "?")}, {meta.get("cores", "?")} cores, '
        f'{meta.get("mem_gib", 0):.0f} GiB RAM; threads: {meta.get("threads", "?")}; python {meta.get("python", "?")}, '
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        "GEMM peak (np.matmul, same run): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()),
        f'memory: {meta.get("memory_note", "")}; allocator: {meta.get("allocator", "?")}',
    ]
    if fmt == "markdown":
        head = [f"- {h}" for h in head]
    parts = ["\n".join(head)]
    if doc.get("results"):
        parts.append(summary_tables(doc["results"], fmt))
        parts.append(format_table(COLUMNS, result_rows(doc["results"]), fmt))
        legend = ["median ms: median wall time of one Jacobian of the whole batch; "
                  "/ fwdderiv-fwd: this method's time over fwdderiv-fwd's time (>1: "
                  "fwdderiv's forward mode is faster); GFLOP/s: the method's own dense FLOP "
                  "count / time (see benchmarks/README.md; above the GEMM peak means the "
                  "method skips work the dense count includes); % peak: of the GEMM peak of that dtype; peak "
                  "MiB: resident memory of one call above the process baseline; compile "
                  "ms: first call minus a steady call (Numba compile or cache load, JAX "
                  "jit, PyTorch lazy initialisation), not in the median; max abs diff: "
                  "largest |J - J_ref| against fwdderiv's float64 forward-mode Jacobian "
                  "of the same input."]
        legend += [f"{m}: {d}" for m, d in METHOD_DOC.items()]
        legend += sorted({f'{r.get("label") or r["method"]}: {r["detail"]}'
                          for r in doc["results"] if r.get("detail")})
        legend = ([f"- {s}" for s in legend] if fmt == "markdown"
                  else [textwrap.fill(s, 100, subsequent_indent="  ") for s in legend])
        parts.append("\n".join(legend))
    if doc.get("scaling"):
        parts.append(format_table(SCALING_COLUMNS, scaling_rows(doc["scaling"]), fmt))
    bad = [r for r in doc.get("results", []) + doc.get("scaling", [])
           if r["status"] == "ok" and not r.get("agree", True)]
    if bad:
        parts.append("!!! DISAGREEMENT with fwdderiv's float64 forward Jacobian in "
                     f"{len(bad)} case(s): " + "; ".join(
                         f'{r["model"]} {r["dtype"]} B={r["batch"]} {r["method"]} max abs '
                         f'diff {r["max_abs_diff"]:.2e}, {r.get("over_tol", "?")} of {r.get("J_size", "?")} '
                         f'entries > tol {r["tol"]:.1e}' for r in bad))
    return "\n\n".join(parts) + "\n"
