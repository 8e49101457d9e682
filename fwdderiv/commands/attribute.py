"""``fwdderiv attribute``: attribution heatmaps of a model for a few real images."""
import argparse
import json
from pathlib import Path

import numpy as np

from ..attacks.plots import require_matplotlib
from ..attribution import InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from ..distributed import ATTRIBUTION_SHARD_SIZE, run_sharded
from ..training.progress import make_bar, progress_enabled
from ._classifier_args import add_model_arguments, class_name, model_and_data, short_name
from ._cluster import add_cluster_options, cluster_kwargs, sharded, where_run
from ._common import names_among, nonnegative_float, positive_int
from ._inputs import picture
from ._output import output_dir
from ._shapes import InputError

#: Method names of ``--methods``, in figure order.
METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "smoothgrad")


def add_parser(sub):
    p = sub.add_parser(
        "attribute", help="attribution heatmaps (saliency, IG, occlusion, ...) as a PNG",
        description="Attribute a model's output probabilities to the input pixels for a few "
                    "held-out images with saliency (|gradient|), gradient x input, integrated "
                    "gradients (black baseline), occlusion and SmoothGrad, for every class in "
                    "one pass, and draw the figure of the attribution papers: the input, then "
                    "one heatmap per method and class (attributions.png; the numbers in "
                    "attributions.npz). Your own model and images: --model FILE --inputs "
                    "X.npy [--labels y.npy].")
    add_model_arguments(p, 4, "held-out images (default: 4)")
    p.add_argument("--methods", type=names_among(METHODS), default=list(METHODS),
                   help=f"comma separated, among {', '.join(METHODS)} (default: all)")
    p.add_argument("--classes", default="pred",
                   help="'pred' (the predicted class), 'label', 'all', or comma-separated "
                        "class indices (default: pred)")
    p.add_argument("--n-steps", type=positive_int, default=50, help="IG points (default: 50)")
    p.add_argument("--window", type=positive_int, default=None,
                   help="occlusion window side in pixels (default: a seventh of the image "
                        "side, at least 2) moved by half its side")
    p.add_argument("--nt-samples", type=positive_int, default=20,
                   help="SmoothGrad samples (default 20)")
    p.add_argument("--stdev", type=nonnegative_float, default=0.15,
                   help="SmoothGrad noise standard deviation (default: 0.15)")
    add_cluster_options(p, f"default: {ATTRIBUTION_SHARD_SIZE}; also without --workers the "
                           "images are attributed shard by shard, so the numbers do not "
                           "depend on --workers; with --workers/--scheduler finished shards "
                           "are kept in OUTPUT/shards and a rerun resumes from them")
    p.set_defaults(run=run)
    return p



def _classes(text, pred, labels, K):
    if text in ("pred", "label"):
        return None
    if text == "all":
        return list(range(K))
    try:
        cls = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"--classes expected pred, label, all or class indices, got "
                         f"{text!r}") from None
    if not cls or min(cls) < 0 or max(cls) >= K:
        raise ValueError(f"--classes expected indices in [0, {K}), got {text!r}")
    return cls


def attribute_all(net, x, methods, n_steps, window, nt_samples, stdev, bar, seed=0):
    """``{method: (N, K, *S)}``: every class's attributions by each method."""
    side = x.shape[-1]
    w = window or max(2, side // 7)
    occ_window = (x.shape[1], w, w)
    makers = {
        "saliency": lambda: Saliency(net).attribute(x, target="all"),
        "input_x_gradient": lambda: InputXGradient(net).attribute(x, target="all"),
        "integrated_gradients": lambda: IntegratedGradients(net).attribute(
            x, target="all", n_steps=n_steps),
        "occlusion": lambda: Occlusion(net).attribute(
            x, occ_window, strides=(x.shape[1], max(1, w // 2), max(1, w // 2)),
            target="all", perturbations_per_eval=64),
        "smoothgrad": lambda: NoiseTunnel(Saliency(net)).attribute(
            x, nt_samples=nt_samples, stdevs=stdev, target="all", abs=False, seed=seed),
    }
    out = {}
    for m in methods:
        out[m] = makers[m]()
        bar.update(1)
    return out


def attribute_sharded(net, x, methods, args, out):
    """:func:`attribute_all` shard by shard (:func:`fwdderiv.distributed.run_sharded`): on
    the cluster of ``--workers``/``--scheduler`` with finished shards kept in
    ``out/shards``, else in turn in this process; one progress bar counts the images."""
    if sharded(args):
        print(f"attributing shard by shard on {where_run(args)}")
    kwargs = cluster_kwargs(args)
    size = kwargs.pop("shard_size") or ATTRIBUTION_SHARD_SIZE
    res = run_sharded(_attribute_shard, x, shared=net,
                      args=(tuple(methods), args.n_steps, args.window, args.nt_samples,
                            args.stdev, args.seed), shard_size=size,
                      shard_dir=out / "shards" if sharded(args) else None,
                      settings={"job": "fwdderiv attribute"},
                      progress=progress_enabled(args.progress), desc="attribute", **kwargs)
    return {m: res[m] for m in methods}


def _attribute_shard(net, x, start, methods, n_steps, window, nt_samples, stdev, seed):
    """One shard of :func:`attribute_sharded`; SmoothGrad's noise is seeded with ``seed``
    plus the index of the shard's first image."""
    return attribute_all(net, x, methods, n_steps, window, nt_samples, stdev,
                         make_bar(len(methods), "attribute", False), seed=seed + start)


def plot(x, attributions, rows, path, title):
    """Rows (image, class) -> the input, then one heatmap per method (red positive, blue
    negative; |A| scaled per panel)."""
    plt = require_matplotlib("fwdderiv attribute")
    methods = list(attributions)
    fig, axes = plt.subplots(len(rows), 1 + len(methods),
                             figsize=(1.7 * (1 + len(methods)), 1.8 * len(rows)),
                             squeeze=False)
    for r, (n, k, label) in enumerate(rows):
        axes[r, 0].imshow(picture(x[n]), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, fontsize=7)
        for c, m in enumerate(methods, 1):
            a = attributions[m][n, k].sum(axis=0)
            top = float(np.abs(a).max()) or 1.0
            axes[r, c].imshow(a, cmap="bwr", vmin=-top, vmax=top)
            if r == 0:
                axes[r, c].set_title(m.replace("_", " "), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args):
    methods = args.methods
    net, x, y, name, names = model_and_data(args, args.batch)
    if x.ndim != 4:
        raise InputError(f"attribute draws heatmaps over images: expected inputs of shape "
                         f"(N, C, H, W), got {x.shape}; use fwdderiv.attribution from Python "
                         "for other inputs")
    out = Path(args.output or "attribute")
    probs = net(x)
    pred = probs.argmax(axis=1)
    K = probs.shape[1]
    classes = _classes(args.classes, pred, y, K)
    attributions = attribute_sharded(net, x, methods, args, out)
    rows = []
    for n in range(len(x)):
        for k in ([int(pred[n])] if args.classes == "pred" else
                  [int(y[n])] if args.classes == "label" else classes):
            rows.append((n, k, f"image {n}, label {class_name(names, y[n])}\nclass "
                                f"{class_name(names, k)} (p = {probs[n, k]:.2f})"))
    summary = {m: {"shape": list(a.shape)} for m, a in attributions.items()}
    if "integrated_gradients" in attributions:
        ig = attributions["integrated_gradients"]
        gain = probs - net(np.zeros_like(x))
        delta = ig.reshape(ig.shape[:2] + (-1,)).sum(-1) - gain
        summary["integrated_gradients"]["max_abs_convergence_delta"] = float(np.abs(delta).max())
        print(f"integrated gradients: completeness |sum A - (F(x) - F(0))| <= "
              f"{np.abs(delta).max():.2e} over {len(x)} images x {K} classes")
    with output_dir(out, last="attributions.json") as stage:
        plot(x, attributions, rows, stage / "attributions.png", short_name(name))
        np.savez(stage / "attributions.npz", x=x, labels=y, probabilities=probs,
                 **{m: a for m, a in attributions.items()})
        (stage / "attributions.json").write_text(
            json.dumps({"model": name, "classes": names and list(names),
                        "methods": summary}, indent=1))
    print(f"model {name}\nwrote {out / 'attributions.png'} ({len(rows)} rows x "
          f"{1 + len(methods)} panels), {out / 'attributions.npz'}")
    return 0
