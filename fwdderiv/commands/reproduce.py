"""``fwdderiv reproduce``: the JSMA experiment of Papernot et al. (EuroS&P 2016), Sec. V.

Trains (or loads from the cache) a classifier, crafts adversarial samples from S benign
test samples towards each of the 9 other classes with the forward derivative, and writes
a report beside the paper's MNIST figures.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._common import add_download_option, add_progress_options, show_progress
from ._classifier_args import DATA_DIR_HELP, add_input_options
from ._output import output_dir

#: The paper's MNIST results (LeNet, Upsilon = 14.5%, theta = +1, probabilities F), for
#: comparison. The abstract states "a 97% adversarial success rate while only modifying on
#: average 4.02% of the input features"; the two-decimal success rates quoted for Sec. V
#: in other places (97.10%, 97.05%) could not be checked against the paper's text here,
#: so the report quotes the abstract's figure.
PAPER = {"success_rate": 0.97, "mean_distortion": 0.0402, "upsilon": 0.145,
         "theta": 1.0, "logits": False, "data": "MNIST",
         "model": "LeNet (Papernot et al. 2016, Sec. V-A)",
         "source": "abstract: 97% success, 4.02% of the features modified on average",
         # The test accuracy of the paper's LeNet could not be confirmed from the stored
         # copies of the paper here, so the report does not print one.
         "model_accuracy": None}

#: The zoo models of the paper's kind: LeNet-style convolutional networks for MNIST.
PAPER_MODELS = ("lenet5", "lenet_mnist")

#: What each domain policy does, and how it departs from the paper's Algorithm 2, for the
#: report (``{max_iter}``: Algorithm 2's iteration cap for the run).
POLICY_NOTES = {
    "saturated": (
        "`saturated` (the default, cleverhans's start). It departs from the paper's "
        "Algorithm 2, whose search domain starts with every feature and which charges "
        "every iteration to max_iter = floor(M Upsilon / 2) = {max_iter}: here a feature "
        "already at the bound theta pushes towards never enters the search domain, so no "
        "iteration is spent on a pick that changes nothing, and crafting stops on the "
        "changed-feature budget floor(Upsilon M) instead of an iteration count."),
    "paper": (
        "`paper`: Algorithm 2 as printed. The search domain starts with every feature, "
        "and every iteration, including the pick of a feature already at its bound (which "
        "changes nothing), counts towards max_iter = floor(M Upsilon / 2) = {max_iter}."),
    "picked": (
        "`picked`: the search domain starts with the features that can move and drops "
        "each feature once picked. It departs from the paper's Algorithm 2, whose search "
        "domain starts with every feature and which charges every iteration to max_iter "
        "= floor(M Upsilon / 2) = {max_iter}."),
}


def paper_comparable(config, n_features):
    """True when the paper reports the run's setting: a LeNet-style zoo network
    (:data:`PAPER_MODELS`) on MNIST (784 features) with a softmax output, theta = +1,
    Upsilon = 14.5%, the probabilities F differentiated. Not for another architecture
    (``--model mlp``) or a model file, whose architecture the report cannot vouch for."""
    model = str(config.get("model") or "").split("(")[0]
    return (n_features == 784 and config.get("data") == "mnist"
            and model in PAPER_MODELS and bool(config.get("softmax_output"))
            and config["theta"] == PAPER["theta"]
            and abs(config["upsilon"] - PAPER["upsilon"]) < 1e-12
            and not config["logits"])

DESCRIPTION = """\
Reproduce the adversarial-sample experiment of Papernot et al., "The Limitations of Deep
Learning in Adversarial Settings" (EuroS&P 2016): the Jacobian-based saliency map attack
(JSMA), computed from the network's forward derivative.

Steps: train the classifier with the project's recipe (or load it from the cache), pick
S correctly classified test samples (classes in turn), craft one adversarial sample per
(sample, other class) with theta=+1 and a distortion budget Upsilon (default the paper's
14.5% of the features), then write to --output:

  report.md             results beside the paper's MNIST numbers, source-target matrices
  results.json          every number of the report, plus per-sample outcomes
  adversarial_grid.png  rows: source class, columns: target class (as the paper's figure)
  saliency_maps.png     the saliency map S(x, t) of eq. (8) for each target
  adversarial_samples.npz  the crafted samples with their source and target classes

The default uses the 8x8 scikit-learn digits (offline, about a minute including the
first training). --dataset mnist switches to MNIST (LeNet-5 on 28x28, trained on the first
9,000 images of the t10k files, samples drawn from the other 1,000: the paper's attack
and budget, but not its model, which trained on the 60,000 training images). The paper's
numbers appear beside the run's only for the setting it reports (a LeNet-style zoo
network on MNIST with a softmax output, theta=+1, Upsilon=14.5%, probabilities F),
and every success rate comes with its 95% Wilson interval. Your own model and images:
--model FILE --inputs X.npy [--labels y.npy] (without --labels, the model's predictions
are the labels).

--hardness also runs the attack at each budget of a grid of maximum distortions and
writes the hardness matrix H(s, t) of Sec. V-B (hardness.png): the mean distortion of
the successful samples (fraction of the features) averaged over success levels 0..1,
from the trapezoid over the runs, closed at 0 and 1 with the first and last measured
distortion; larger is harder. A pair whose success stays below 90% at every budget is
masked (its reached success range is shown instead), so a rarely successful pair cannot
look easy. The default grid, 0.3% to 12.8%, is the paper's as we read it; it could not
be checked against the paper's text here and the report says so. --workers N crafts on a local
Dask cluster of N processes, --scheduler ADDRESS on an existing one; finished shards are
kept in --output/shards, and rerunning the same command resumes from them.
"""


def add_parser(subparsers):
    """Register ``reproduce`` on an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "reproduce", help="reproduce the paper's JSMA experiment and write a report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help=DATA_DIR_HELP)
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="the attacked model: a zoo name, a fwdderiv .npz, an .onnx file or "
                        "file.py:factory returning a torch.nn.Module (default: the data set's zoo "
                        "model, trained once and cached: digits_net on the digits, lenet5 "
                        "on MNIST and Fashion-MNIST, resnet20 on CIFAR-10, photo_cnn on a "
                        "folder)")
    add_input_options(p)
    p.add_argument("--samples", type=int, default=100, metavar="S",
                   help="benign source samples; each is crafted towards 9 targets "
                        "(default: %(default)s)")
    p.add_argument("--output", type=Path, default=Path("reproduction"), metavar="DIR",
                   help="where to write the report (default: ./reproduction)")
    p.add_argument("--upsilon", type=float, default=PAPER["upsilon"],
                   help="maximum distortion, fraction of features (default: %(default)s)")
    p.add_argument("--theta", type=float, default=1.0,
                   help="change per modified feature (default: %(default)s)")
    p.add_argument("--logits", action="store_true",
                   help="differentiate the logits Z instead of the probabilities F")
    p.add_argument("--mode", choices=("forward", "reverse", "vjp"), default="forward",
                   help="how the derivatives are computed: forward (default, the paper's "
                        "forward derivative), reverse (the same Jacobian by "
                        "backpropagation) or vjp (only the rows the attack uses); all "
                        "three compute the same alpha and beta up to rounding, which "
                        "can decide a near-tie differently")
    p.add_argument("--domain-policy", choices=("saturated", "paper", "picked"),
                   default="saturated",
                   help="search domain: saturated (default; starts with the features not "
                        "at the bound, as cleverhans), paper (starts with every feature, "
                        "as the paper's Algorithm 2), picked (see fwdderiv.attacks.jsma)")
    p.add_argument("--hardness", action="store_true",
                   help="also run the attack at each maximum distortion of --hardness-grid "
                        "and report the hardness H(s, t) of Sec. V-B: the mean distortion "
                        "of successful samples averaged over success levels 0..1 (larger "
                        "is harder); pairs below 90%% success at every budget are masked")
    p.add_argument("--hardness-grid", type=_grid, default=None, metavar="U1,U2,...",
                   help="maximum distortions for --hardness, fractions of the features "
                        "(default: 0.003,0.013,0.026,0.051,0.077,0.102,0.128, the paper's "
                        "grid as we read Sec. V-B; not confirmed against its text)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="craft on a local dask.distributed cluster of N worker processes")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="craft on an existing Dask cluster (scheduler address)")
    p.add_argument("--shard-sources", type=int, default=32, metavar="S",
                   help="source samples per shard with --workers/--scheduler "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="(sample, target) pairs crafted together (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default: %(default)s)")
    p.add_argument("--no-figures", action="store_true",
                   help="skip the PNG figures (no matplotlib needed)")
    add_download_option(add_progress_options(p))
    p.set_defaults(run=run)
    return p


def _grid(text):
    try:
        u = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as "
                                         f"0.013,0.026,0.051, got {text!r}") from None
    if len(u) < 2 or any(not 0 <= v <= 1 for v in u) or any(b <= a for a, b in zip(u, u[1:])):
        raise argparse.ArgumentTypeError(f"expected at least two increasing fractions in "
                                         f"[0, 1], got {text!r}")
    return u


def select_sources(y, pred, n, n_classes=10):
    """Indices of ``n`` correctly classified samples, taking the classes in turn.

    Deterministic: class 0's first correct sample, class 1's first, ..., then each
    class's second, and so on; a class that runs out is skipped.
    """
    pools = [list(np.flatnonzero((y == c) & (pred == c))) for c in range(n_classes)]
    chosen = []
    depth = 0
    while len(chosen) < n and any(len(p) > depth for p in pools):
        for c in range(n_classes):
            if len(chosen) < n and len(pools[c]) > depth:
                chosen.append(pools[c][depth])
        depth += 1
    return np.array(chosen, dtype=np.int64)


def _load(args):
    """(data, net, model name): the held-out images of ``--dataset`` (resized by
    ``--image-size``) or the user's ``--inputs``/``--labels``, and the model, checked to
    be a 10-class classifier of them (:func:`._classifier_args.load_classifier`)."""
    from types import SimpleNamespace
    from ._classifier_args import load_classifier
    from ._common import CommandError

    from fwdderiv.models.trained import default_model

    c = load_classifier(args)
    k = len(c.classes) if c.classes is not None else 10
    out = tuple(c.net.output_shape(c.x.shape[1:]))
    if out != (k,):
        raise CommandError(f"--model {args.model}: expected {k} class outputs for the "
                           f"{c.data} images (the attack crafts towards each of {k} "
                           f"classes), got output shape {out}")
    if c.note:
        print(f"fwdderiv reproduce: {c.note}", file=sys.stderr)
    spec = args.model or default_model(c.data)
    model = ("lenet5(in_size=28)" if spec == "lenet5" and c.data in ("mnist", "fashion-mnist")
             else spec)
    return SimpleNamespace(x_test=c.x, y_test=c.y, name=c.data, description=c.where,
                           n_classes=k, classes=c.classes), c.net, model


def _nan_to_none(a):
    a = np.asarray(a, dtype=np.float64)
    return [None if not math.isfinite(v) else round(float(v), 6) for v in a.ravel()] \
        if a.ndim == 1 else [_nan_to_none(row) for row in a]


def _pct(v):
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _matrix_md(M, fmt):
    cells = np.empty(M.shape, dtype=object)
    for (s, t), v in np.ndenumerate(M):
        cells[s, t] = "-" if not math.isfinite(v) else fmt(v)
    return _text_matrix_md(cells)


def _text_matrix_md(cells):
    """A (K, K) array of strings as a markdown table, rows source, columns target."""
    k = cells.shape[0]
    lines = ["| source \\ target | " + " | ".join(str(t) for t in range(k)) + " |",
             "|---|" + "---|" * k]
    lines += [f"| **{s}** | " + " | ".join(cells[s]) + " |" for s in range(k)]
    return "\n".join(lines)


def _check_options(args):
    """The first problem with the options, as one line naming the option, or None."""
    if args.samples < 1:
        return f"--samples must be at least 1, got {args.samples}"
    if not 0 < args.upsilon <= 1:
        return (f"--upsilon must be in (0, 1], a fraction of the features, got "
                f"{args.upsilon}; the paper uses 0.145")
    if not math.isfinite(args.theta) or args.theta == 0:
        return f"--theta must be a finite nonzero number (+1 or -1), got {args.theta}"
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if args.output.exists() and not args.output.is_dir():
        return (f"--output {str(args.output)!r} is an existing file; the report is a "
                "directory: give a new or existing directory name")
    if args.data_dir is not None and not args.data_dir.is_dir() and \
            not getattr(args, "download", False):
        return (f"--data-dir {str(args.data_dir)!r} is not a directory; give the folder "
                "holding the MNIST IDX files, add --download to fetch them there, or drop "
                "--data-dir for the offline digits")
    return None


def run(args):
    """Run the reproduction; returns the exit status (0 on success).

    Nothing is written until the crafting is done; then every file goes to a temporary
    folder renamed to --output at the end (:func:`._output.output_dir`), report.md
    last. With --workers or --scheduler the finished shards are kept in --output/shards
    as they arrive, so an interrupted run resumes."""
    status, plt = _start(args)
    if status is not None:
        return status
    problem = _check_sharding(args)
    if problem:
        print(f"fwdderiv reproduce: {problem}", file=sys.stderr)
        return 2
    out = Path(args.output)

    ds, net, model = _load(args)
    k = ds.n_classes
    pred_test = net(ds.x_test).argmax(axis=1)
    accuracy = float((pred_test == ds.y_test).mean())
    picked = _pick_sources(ds, pred_test, args.samples, k)

    warmup = _warm_up(args, net, picked)
    res, seconds, hard = _craft_resumably(args, net, picked, out, k)
    mats, budgets, curve, A, J, sm = _metrics(args, net, picked, res, hard, k)
    summary = _summary(res, A, picked.y, k)
    model = _describe_model(net, model, args.logits)
    results = _results(args, ds, model, accuracy, picked, res, seconds, summary,
                       budgets, curve, mats, hard, k)
    results["warmup_seconds"] = warmup
    with output_dir(out, last="report.md") as stage:
        (stage / "results.json").write_text(json.dumps(results, indent=1))
        np.savez_compressed(stage / "adversarial_samples.npz", x_adv=res.x_adv,
                            source=picked.src, target=picked.tgt, success=res.success,
                            test_index=picked.idx[picked.row])
        figures = [] if plt is None else _figures(stage, ds.name, picked, res, J, sm, hard, k)
        (stage / "report.md").write_text(_report(results, mats, budgets, curve, figures))
    print(f"fwdderiv reproduce: {ds.name}, {len(picked.tgt)} adversarial samples in "
          f"{seconds:.1f} s ({_rate(results)}; not counting {warmup:.1f} s of warm-up "
          f"before it: {WARM_UP}): "
          f"success {_pct(summary['success_rate'])}, mean distortion "
          f"{_pct(summary['mean_distortion_successful'])} (successful) / "
          f"{_pct(summary['mean_distortion_all'])} (all)"
          + ("; paper (MNIST): 97% / 4.02%. " if results["paper_comparable"] else ". ")
          + f"Report: {out / 'report.md'}")
    return 0


#: What the warm-up before the timed crafting does.
WARM_UP = ("one pair crafted first, while Numba compiles its kernels or loads them from "
           "its cache")


def _warm_up(args, net, picked):
    """Craft one (sample, target) pair with the run's settings and a budget of a few
    features, in this process: the first call of each Numba kernel compiles it (or loads
    it from the on-disk cache), and that time stays out of the crafting time and the
    throughput. Returns its seconds. Worker processes (--workers) load the kernels
    from the cache this fills, inside their crafting time."""
    from fwdderiv.attacks import jsma

    n_features = int(np.prod(picked.x.shape[1:]))
    t0 = time.perf_counter()
    jsma(net, picked.x_rep[:1], picked.tgt[:1], theta=args.theta,
         upsilon=min(args.upsilon, 4 / n_features), logits=args.logits, mode=args.mode,
         domain_policy=args.domain_policy, batch_size=1, progress=False)
    return time.perf_counter() - t0


def _craft_resumably(args, net, picked, out, k):
    """:func:`_craft_all`; when it stops with finished shards kept (--workers,
    --scheduler), says where they are and how to resume."""
    try:
        return _craft_all(args, net, picked, out, k)
    except BaseException:
        shards = sorted(out.glob("shards*/shard-*.npz")) if out.is_dir() else []
        if shards:
            print(f"fwdderiv reproduce: stopped; {len(shards)} finished shards are kept in "
                  f"{out}, with no report yet: run the same command again to resume",
                  file=sys.stderr)
        raise


def _rate(results):
    rate = results["samples_per_second"]
    return ("n/a adversarial samples per second" if rate is None else
            f"{rate:.1f} adversarial samples per second")


def _start(args):
    """Check the options and find matplotlib: (exit status or None to go on, pyplot or None).

    Problems are printed to stderr; the status is then 2."""
    problem = _check_options(args)
    if problem:
        print(f"fwdderiv reproduce: error: {problem}", file=sys.stderr)
        return 2, None
    plt = None
    if not args.no_figures:
        from fwdderiv.attacks.plots import require_matplotlib
        try:
            plt = require_matplotlib("fwdderiv reproduce")
        except ImportError as err:
            print(f"{err} Or pass --no-figures.", file=sys.stderr)
            return 2, None
    return None, plt


def _check_sharding(args):
    """The first problem with --workers or --shard-sources, as one line, or None."""
    if args.workers is not None and args.workers < 1:
        return f"--workers must be at least 1, got {args.workers}"
    if args.shard_sources < 1:
        return f"--shard-sources must be at least 1, got {args.shard_sources}"
    return None


class _Sources(NamedTuple):
    """The benign samples and the (sample, target) pairs crafted from them."""
    idx: np.ndarray    # (S,) test-set indices of the benign samples
    x: np.ndarray      # (S, *input shape) the benign samples
    y: np.ndarray      # (S,) their classes
    x_rep: np.ndarray  # (S*(K-1), *input shape) each sample once per other class
    src: np.ndarray    # (S*(K-1),) source class of each pair
    tgt: np.ndarray    # (S*(K-1),) target class of each pair
    row: np.ndarray    # (S*(K-1),) index into the S samples of each pair


def _pick_sources(ds, pred_test, n, k):
    """``n`` correctly classified test samples and their pairs with the other classes."""
    from fwdderiv.attacks import expand_targets

    idx = select_sources(ds.y_test, pred_test, n, k)
    x_src, y_src = ds.x_test[idx], ds.y_test[idx]
    x_rep, src, tgt, row = expand_targets(x_src, y_src, k)
    return _Sources(idx, x_src, y_src, x_rep, src, tgt, row)


def _craft(args, net, picked, out, k, upsilon, shards, progress):
    """One JSMA run over every pair at maximum distortion ``upsilon``; with --workers or
    --scheduler, sharded and kept in ``out / shards``."""
    from fwdderiv.attacks import jsma

    extra = {}
    if args.workers is not None or args.scheduler is not None:
        extra = dict(workers=args.workers, scheduler=args.scheduler,
                     shard_dir=out / shards, shard_size=args.shard_sources * (k - 1))
    return jsma(net, picked.x_rep, picked.tgt, theta=args.theta, upsilon=upsilon,
                logits=args.logits, mode=args.mode, domain_policy=args.domain_policy,
                batch_size=args.batch_size, progress=progress, **extra)


def _craft_all(args, net, picked, out, k):
    """The run at --upsilon, timed, and with --hardness the runs at each grid budget.

    Returns (result, crafting seconds, hardness dict or None)."""
    from fwdderiv.attacks import (PAPER_HARDNESS_UPSILONS, hardness_matrix,
                                  mean_distortion, success_rate)

    t0 = time.perf_counter()
    res = _craft(args, net, picked, out, k, args.upsilon, "shards", show_progress(args))
    seconds = time.perf_counter() - t0
    hard = None
    if args.hardness:
        grid = args.hardness_grid or list(PAPER_HARDNESS_UPSILONS)
        runs = [_craft(args, net, picked, out, k, u, f"shards-upsilon-{u:g}",
                       show_progress(args)) for u in grid]
        hm = hardness_matrix(picked.src, picked.tgt, np.stack([r.success for r in runs]),
                             np.stack([r.distortion for r in runs]), k)
        hard = {"upsilon": grid, "matrix": hm.matrix, "success_rate": hm.success_rate,
                "distortion": hm.distortion, "reached_low": hm.reached_low,
                "reached_high": hm.reached_high, "masked": hm.masked,
                "unmasked": hm.unmasked, "paper_grid": grid == list(PAPER_HARDNESS_UPSILONS),
                "overall_success_rate": [success_rate(r.success) for r in runs],
                "overall_distortion": [mean_distortion(r.distortion, r.success)
                                       for r in runs]}
    return res, seconds, hard


def _describe_model(net, name, logits):
    """The model as the report names it: ``name`` (zoo name or file), its architecture
    (the layers in order) and whether the attack differentiates a softmax output."""
    from fwdderiv.attacks import softmax_output

    try:
        layers = [repr(layer) for layer in net]
    except TypeError:
        layers = [type(net).__name__]
    return {"name": name, "architecture": " -> ".join(layers),
            "softmax_output": bool(softmax_output(net, logits))}


def _metrics(args, net, picked, res, hard, k):
    """The source-target matrices, the success curve and the adversarial distance.

    Returns (matrices, budgets, success curve, A of shape (S, K), the Jacobian J of the
    benign samples, the softmax flag the saliency map uses)."""
    from fwdderiv.attacks import (forward_derivative, hardness_matrix_budget_approximation,
                                  saliency_from_jacobian, softmax_output,
                                  source_target_matrices, success_curve, wilson_interval)

    src, tgt, y_src = picked.src, picked.tgt, picked.y
    mats = source_target_matrices(src, tgt, res.success, res.distortion, k)
    wins = np.rint(np.nan_to_num(mats["success_rate"]) * mats["count"])
    mats["success_rate_wilson95_low"], mats["success_rate_wilson95_high"] = \
        wilson_interval(wins, mats["count"])
    budgets = np.linspace(0, args.upsilon, 11)
    mats["hardness_budget_approximation"] = hardness_matrix_budget_approximation(
        src, tgt, res.success, res.distortion, k, budgets)
    if hard is not None:
        mats["hardness"] = hard["matrix"]
    # Adversarial distance A(x, t) of the benign samples (Sec. V-C), from one Jacobian each.
    sm = softmax_output(net, args.logits)
    _, J = forward_derivative(net, picked.x.astype(np.float64), logits=args.logits,
                              mode="forward" if args.mode == "forward" else "reverse")
    A = np.stack([1 - (saliency_from_jacobian(J, np.full(len(picked.idx), t), softmax=sm)
                       > 0).mean(axis=1)
                  for t in range(k)], axis=1)                      # (S, K)
    mats["adversarial_distance"] = np.full((k, k), np.nan)
    for s in range(k):
        for t in range(k):
            if s != t and (y_src == s).any():
                mats["adversarial_distance"][s, t] = A[y_src == s, t].mean()
    curve = success_curve(res.success, res.distortion, budgets)
    return mats, budgets, curve, A, J, sm


def _summary(res, A, y_src, k):
    """The headline numbers of the run."""
    from fwdderiv.attacks import mean_distortion, success_rate, wilson_interval

    return {
        "success_rate": success_rate(res.success),
        "success_rate_wilson95": list(wilson_interval(int(np.count_nonzero(res.success)),
                                                      len(res.success))),
        "mean_distortion_all": mean_distortion(res.distortion),
        "mean_distortion_successful": mean_distortion(res.distortion, res.success),
        "mean_changed_features_successful": mean_distortion(res.n_changed, res.success),
        "adversarial_distance_mean": float(A[np.arange(k)[None, :] != y_src[:, None]].mean()),
    }


def _hardness_json(hard):
    """The --hardness runs as results.json stores them (None without --hardness)."""
    from fwdderiv.attacks import HARDNESS_MIN_SUCCESS, PAPER_HARDNESS_GRID_CONFIRMED

    if hard is None:
        return None
    return {
        "upsilon": hard["upsilon"], "paper_grid": hard["paper_grid"],
        "grid_confirmed": PAPER_HARDNESS_GRID_CONFIRMED and hard["paper_grid"],
        "min_success": HARDNESS_MIN_SUCCESS,
        "reached_low": _nan_to_none(hard["reached_low"]),
        "reached_high": _nan_to_none(hard["reached_high"]),
        "masked": hard["masked"].tolist(),
        "unmasked": _nan_to_none(hard["unmasked"]),
        "overall_success_rate": _nan_to_none(hard["overall_success_rate"]),
        "overall_distortion_successful": _nan_to_none(hard["overall_distortion"]),
        "success_rate": [_nan_to_none(m) for m in hard["success_rate"]],
        "distortion_successful": [_nan_to_none(m) for m in hard["distortion"]]}


def _results(args, ds, model, accuracy, picked, res, seconds, summary, budgets, curve,
             mats, hard, k):
    """Every number of the report, plus per-sample outcomes, as written to results.json."""
    idx, src, tgt, row = picked.idx, picked.src, picked.tgt, picked.row
    return {
        "paper": PAPER,
        "config": {"data": ds.name, "model": model["name"], "samples": int(len(idx)),
                   "targets_per_sample": k - 1, "theta": args.theta, "upsilon": args.upsilon,
                   "logits": bool(args.logits), "mode": args.mode, "seed": args.seed,
                   "domain_policy": args.domain_policy,
                   "max_iter_algorithm_2": res.budget // 2,
                   "softmax_output": model["softmax_output"],
                   "workers": args.workers, "scheduler": args.scheduler},
        "data_description": ds.description,
        "architecture": model["architecture"],
        "test_accuracy": accuracy, "n_test": int(len(ds.y_test)),
        "n_features": res.n_features, "budget_features": res.budget,
        "n_crafted": int(len(tgt)),
        **summary,
        "crafting_seconds": seconds,
        "samples_per_second": len(tgt) / seconds if seconds > 0 else None,
        "success_curve": {"upsilon": _nan_to_none(budgets), "success_rate": _nan_to_none(curve)},
        "matrices": {name: (M.tolist() if M.dtype.kind == "i" else _nan_to_none(M))
                     for name, M in mats.items()},
        "paper_comparable": paper_comparable(
            {"theta": args.theta, "upsilon": args.upsilon, "logits": bool(args.logits),
             "data": ds.name, "model": model["name"],
             "softmax_output": model["softmax_output"]}, res.n_features),
        "hardness": _hardness_json(hard),
        "per_sample": {"test_index": idx[row].tolist(), "source": src.tolist(),
                       "target": tgt.tolist(), "success": res.success.tolist(),
                       "n_changed": res.n_changed.tolist(),
                       "iterations": res.iterations.tolist()},
    }


def _figures(out, name, picked, res, J, sm, hard, k):
    """Draw the adversarial grid, the saliency maps and (with --hardness) the hardness
    matrix into ``out``; returns the file names written."""
    from fwdderiv.attacks import saliency_from_jacobian
    from fwdderiv.attacks.plots import plot_adversarial_grid, plot_saliency_maps

    x_src, y_src, src, tgt, row = picked.x, picked.y, picked.src, picked.tgt, picked.row
    first = {}
    for i, s in enumerate(y_src):
        first.setdefault(int(s), i)
    grid, failed = {}, set()
    for j in range(len(tgt)):
        s, t = int(src[j]), int(tgt[j])
        if first.get(s) == row[j]:
            grid[(s, t)] = res.x_adv[j]
            if not res.success[j]:
                failed.add((s, t))
    plot_adversarial_grid({s: x_src[i] for s, i in first.items()}, grid,
                          out / "adversarial_grid.png", k, failed=failed,
                          title=f"JSMA on {name}: rows source, columns target "
                                "(red frame: target not reached)")
    rows_ = sorted(first.values())
    maps = np.stack([saliency_from_jacobian(J[rows_], np.full(len(rows_), t), softmax=sm)
                     for t in range(k)], axis=1).reshape((len(rows_), k) + x_src.shape[1:])
    plot_saliency_maps(x_src[rows_], maps, [int(y_src[i]) for i in rows_],
                       out / "saliency_maps.png")
    figures = ["adversarial_grid.png", "saliency_maps.png"]
    if hard is not None:
        from fwdderiv.attacks import HARDNESS_MIN_SUCCESS
        from fwdderiv.attacks.plots import plot_hardness
        plot_hardness(hard["matrix"], out / "hardness.png", reached=hard["reached_high"],
                      title=f"Hardness H(s, t) on {name} (Sec. V-B; larger is harder; "
                            f"grey: success never reached {100 * HARDNESS_MIN_SUCCESS:.0f}%)")
        figures.append("hardness.png")
    return figures


def _hardness_md(r, mats):
    h = r["hardness"]
    if h is None:
        from fwdderiv.attacks import PAPER_HARDNESS_UPSILONS
        grid = ", ".join(f"{100 * u:.1f}%" for u in PAPER_HARDNESS_UPSILONS)
        lines = ["### Hardness", "",
                 "Not measured: the paper's hardness needs runs at a grid of maximum "
                 f"distortions (by default {grid}, the paper's grid as we read Sec. V-B, "
                 "**not confirmed** against its text); pass --hardness. The one-run budget "
                 "approximation (`hardness_budget_approximation`, not comparable with the "
                 "paper's figure) is in results.json.", ""]
        return lines
    grid = ", ".join(f"{100 * u:.1f}%" for u in h["upsilon"])
    source = ("the paper's grid as we read Sec. V-B; **not confirmed** against the "
              "paper's text, which could not be consulted here" if h["paper_grid"]
              else "a grid given with --hardness-grid, not the paper's")
    return ["### Hardness H(s, t) (Sec. V-B; larger is harder)", "",
            f"From {len(h['upsilon'])} runs at Upsilon = {grid} ({source}). Each cell is "
            "the mean distortion of the successful samples (fraction of the features) "
            "averaged over success levels 0..1: the trapezoid over the runs of "
            "(success rate, measured distortion), closed at 0 and 1 with the first and "
            "last measured distortion. Pairs whose success stays below "
            f"{100 * h['min_success']:.0f}% at every budget are masked and show the "
            "highest success they reached; their number would be mostly extrapolated.", "",
            "| Upsilon | " + " | ".join(f"{100 * u:.1f}%" for u in h["upsilon"]) + " |",
            "|---|" + "---|" * len(h["upsilon"]),
            "| success | " + " | ".join(_pct(v) for v in h["overall_success_rate"]) + " |",
            "| distortion (successful) | "
            + " | ".join(_pct(v) for v in h["overall_distortion_successful"]) + " |", "",
            _hardness_cells_md(h), "",
            "Reached success range per pair (lowest to highest budget):", "",
            _range_md(h), ""]


def _hardness_cells_md(h):
    """The hardness matrix, masked cells as ``masked (40%)``."""
    H = np.array(h["unmasked"], dtype=float)
    high = np.array(h["reached_high"], dtype=float)
    cells = np.empty(H.shape, dtype=object)
    for (s, t), v in np.ndenumerate(H):
        cells[s, t] = ("-" if not math.isfinite(high[s, t]) else
                       f"masked ({100 * high[s, t]:.0f}%)" if h["masked"][s][t] else
                       f"{v:.4f}")
    return _text_matrix_md(cells)


def _range_md(h):
    low = np.array(h["reached_low"], dtype=float)
    high = np.array(h["reached_high"], dtype=float)
    cells = np.empty(low.shape, dtype=object)
    for (s, t), lo in np.ndenumerate(low):
        cells[s, t] = ("-" if not math.isfinite(lo) else
                       f"{100 * lo:.0f}-{100 * high[s, t]:.0f}%")
    return _text_matrix_md(cells)


def _rate_ci(rate, n):
    """A success rate with its 95% Wilson interval, e.g. ``80.00% [49.02%, 94.33%]``."""
    from fwdderiv.attacks import wilson_interval

    if rate is None or n == 0 or not np.isfinite(rate):
        return "-"
    low, high = wilson_interval(int(round(rate * n)), n)
    return f"{_pct(rate)} [{_pct(low)}, {_pct(high)}]"


def _cell_md(mats):
    """Each source-target cell's success rate with its Wilson interval and count."""
    def cell(s, t):
        n = int(mats["count"][s, t])
        if n == 0:
            return "-"
        low, high = (mats[f"success_rate_wilson95_{b}"][s, t] for b in ("low", "high"))
        return (f"{100 * mats['success_rate'][s, t]:.0f}% [{100 * low:.0f}-"
                f"{100 * high:.0f}], n={n}")
    k = mats["count"].shape[0]
    lines = ["| source \\ target | " + " | ".join(str(t) for t in range(k)) + " |",
             "|---|" + "---|" * k]
    lines += [f"| **{s}** | " + " | ".join(cell(s, t) for t in range(k)) + " |"
              for s in range(k)]
    return "\n".join(lines)


def _setting_md(r):
    """The opening paragraphs: data, model, held-out accuracy, settings, domain policy."""
    c = r["config"]
    return [
        f"Data: {r['data_description']}. Model: `{c['model']}`, architecture "
        f"{r['architecture']}; accuracy {_pct(r['test_accuracy'])} on "
        + (f"the {r['n_test']} given inputs. " if c["data"] == "inputs" else
           f"{r['n_test']} held-out images. ")
        + f"{c['samples']} correctly classified "
        f"test samples x {c['targets_per_sample']} targets = {r['n_crafted']} adversarial "
        f"samples, theta = {c['theta']:+g}, Upsilon = {100 * c['upsilon']:.1f}% "
        f"({r['budget_features']} of {r['n_features']} features), differentiating "
        f"{'the logits Z' if c['logits'] else 'the probabilities F'} in {c['mode']} mode.",
        "",
        "Search domain policy: "
        + POLICY_NOTES[c["domain_policy"]].format(max_iter=c["max_iter_algorithm_2"]),
        "",
    ]


def _headline_md(r):
    """The headline table: with the paper's column only in the paper's setting."""
    c, n = r["config"], r["n_crafted"]
    paper = r["paper_comparable"]
    rows = [("Success rate (95% Wilson interval)", _rate_ci(r["success_rate"], n), "97%"),
            ("Mean distortion, successful samples",
             _pct(r["mean_distortion_successful"]), "4.02%"),
            ("Mean distortion, all samples", _pct(r["mean_distortion_all"]), "-"),
            ("Maximum distortion Upsilon", f"{100 * c['upsilon']:.1f}%", "14.5%"),
            ("Features per sample", str(r["n_features"]), "784"),
            ("Mean adversarial distance A(x, t)",
             f"{r['adversarial_distance_mean']:.3f}", "-")]
    if paper:
        lines = ["| | this run | paper (MNIST, LeNet) |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {p} |" for a, b, p in rows]
        accuracy = PAPER["model_accuracy"]
        lines += ["", "The paper's column holds its MNIST figures as its abstract states them "
                  "(97% success, 4.02% of the features changed on average). Its LeNet was "
                  "trained on the 60,000 MNIST training images"
                  + (f" ({_pct(accuracy)} test accuracy)" if accuracy is not None else
                     " (its test accuracy could not be confirmed here and is not quoted)")
                  + f", this run's `{c['model']}`, with {_pct(r['test_accuracy'])} held-out "
                  f"accuracy, on {r['data_description']}. Distortion is the fraction of "
                  "input features changed."]
        return lines
    lines = ["| | this run |", "|---|---|"] + [f"| {a} | {b} |" for a, b, _ in rows]
    lines += ["", "The paper reports a LeNet on MNIST (784 features) with a softmax "
              "output, theta = +1, Upsilon = 14.5% and the probabilities F "
              "differentiated; this run's setting differs, so no paper figure is shown "
              "beside it."]
    return lines


def _report(r, mats, budgets, curve, figures):
    c = r["config"]
    lines = ["# JSMA reproduction: Papernot et al., EuroS&P 2016", "",
             *_setting_md(r), *_headline_md(r)]
    if r["n_features"] != 784:
        lines += ["", f"This run's inputs have {r['n_features']} features, so Upsilon = "
                  f"{100 * c['upsilon']:.1f}% allows only {r['budget_features']} changed "
                  "features (MNIST: 113); each changed pixel is a larger part of a small "
                  "image, and the rates are not directly comparable."]
    n = r["n_crafted"]
    lines += ["", f"Crafting took {r['crafting_seconds']:.1f} s ({_rate(r)}), not counting "
              f"{r.get('warmup_seconds', 0):.1f} s of warm-up before it: {WARM_UP}.", "",
              "## Success rate against the distortion budget", "",
              "From the same run: a sample succeeds under a smaller budget exactly when it "
              "succeeded here with no more distortion (the budget only stops crafting). "
              f"Brackets: 95% Wilson interval over the {n} crafts.", "",
              "| Upsilon | success |", "|---|---|",
              *[f"| {100 * u:.1f}% | {_rate_ci(v, n)} |" for u, v in zip(budgets, curve)],
              "", "## Source-target matrices", "",
              "### Success rate", "",
              "Each cell: success rate, [95% Wilson interval], number of crafts.", "",
              _cell_md(mats),
              "", "### Mean distortion of successful samples", "",
              _matrix_md(mats["distortion_successful"], lambda v: f"{100 * v:.2f}%"), "",
              *_hardness_md(r, mats),
              "### Mean adversarial distance A(x, t) of the benign samples (Sec. V-C)", "",
              _matrix_md(mats["adversarial_distance"], lambda v: f"{v:.3f}")]
    if figures:
        lines += ["", "## Figures", "",
                  "![Adversarial samples: rows source class, columns target class]"
                  "(adversarial_grid.png)", "",
                  "![Saliency maps S(x, t) for each target](saliency_maps.png)"]
        if "hardness.png" in figures:
            lines += ["", "![Hardness H(s, t): rows source, columns target](hardness.png)"]
    lines += ["", "All numbers: `results.json`. Crafted samples: `adversarial_samples.npz`.", ""]
    return "\n".join(lines)
