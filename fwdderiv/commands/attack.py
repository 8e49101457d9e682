"""``fwdderiv attack``: accuracy of a model under FGSM and PGD as eps grows, and the FGSM
figure (an image, its gradient sign, the adversarial image, with the predictions)."""
import argparse
import json
from pathlib import Path

import numpy as np

from ..attacks import fast_gradient_method
from ..distributed import correct_after_attack, robust_accuracy
from ..attacks.plots import require_matplotlib
from ..gradients import loss_gradient
from ..training.progress import make_bar, progress_enabled
from ._classifier_args import add_model_arguments, class_name, model_and_data, short_name
from ._cluster import add_cluster_options, cluster_kwargs, sharded, where_run
from ._common import names_among, nonnegative_float, positive_int
from ._inputs import picture
from ._output import output_dir

ATTACKS = ("fgsm", "pgd")


def add_parser(sub):
    p = sub.add_parser(
        "attack", help="accuracy under FGSM and PGD as eps grows (PNG + JSON)",
        description="Attack a model with the fast gradient sign method (one L-inf step) and "
                    "projected gradient descent (iterated steps projected onto the eps-ball), "
                    "untargeted, on held-out images in [0, 1]; write the accuracy-versus-eps "
                    "curve (accuracy_vs_eps.png, accuracy_vs_eps.json) and the FGSM figure of "
                    "one image (fgsm_example.png). Your own model and images: --model "
                    "FILE --inputs X.npy [--labels y.npy] (without --labels the model's "
                    "predictions are the labels, so the clean accuracy is 1).")
    add_model_arguments(p, 300, "held-out images attacked (default: 300)")
    p.add_argument("--eps", type=_floats, default=_floats("0,0.05,0.1,0.15,0.2,0.25,0.3"),
                   help="comma-separated L-inf radii (default: 0,0.05,...,0.3)")
    p.add_argument("--attacks", type=names_among(ATTACKS), default=list(ATTACKS),
                   help="comma separated: fgsm, pgd (default: both)")
    p.add_argument("--pgd-steps", type=positive_int, default=10,
                   help="PGD iterations (default: 10)")
    p.add_argument("--pgd-step-size", type=nonnegative_float, default=None,
                   help="PGD step as a fraction of eps (default: 2.5 / pgd-steps, Madry et "
                        "al.'s rule)")
    p.add_argument("--attack-batch", type=positive_int, default=128,
                   help="images attacked together (default: 128)")
    add_cluster_options(p, "a multiple of --attack-batch, default --attack-batch; every batch "
                           "is attacked as without --workers, so the curves are the same; "
                           "finished shards are kept in OUTPUT/shards and a rerun resumes "
                           "from them")
    p.set_defaults(run=run)
    return p


def _floats(text):
    """argparse type of ``--eps``: comma-separated numbers >= 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got "
                                         f"{text!r}") from None
    if not values or not all(0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers >= 0, got {text!r}")
    return values



def accuracy_curve(net, x, y, eps_list, attacks, pgd_steps, step_fraction, batch, bar,
                   seed=0):
    """``{attack: [accuracy at each eps]}`` on ``(x, y)``, images clipped to [0, 1]."""
    curves = {a: [] for a in attacks}
    for attack in attacks:
        for eps in eps_list:
            correct = 0
            for i in range(0, len(x), batch):
                xb, yb = x[i:i + batch], y[i:i + batch]
                correct += int(correct_after_attack(net, xb, yb, attack, eps, pgd_steps,
                                                    step_fraction, (0.0, 1.0),
                                                    seed + i).sum())
                bar.update(len(xb))
            curves[attack].append(correct / len(x))
            bar.set_postfix_str(f"{attack} eps {eps:g}: accuracy {curves[attack][-1]:.3f}")
    return curves


def plot_curve(eps_list, curves, path, title):
    plt = require_matplotlib("fwdderiv attack")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for attack, acc in curves.items():
        ax.plot(eps_list, acc, marker="o", label=attack.upper())
    ax.set_xlabel("eps (L-inf, images in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fgsm_example(net, x, y, eps, path, classes=None):
    """Image, sign of the loss gradient, and the FGSM image, each with the network's
    prediction and its probability."""
    plt = require_matplotlib("fwdderiv attack")
    sign = np.sign(loss_gradient(net, x[None], y[None]))
    adv = np.clip(x[None] + eps * sign, 0, 1)
    panels = [("image", x[None]), ("sign of the loss gradient", sign),
              (f"image + {eps:g} x sign", adv)]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for ax, (title, img) in zip(axes, panels):
        p = net(img.astype(x.dtype))[0]
        k = int(np.argmax(p))
        ax.imshow(picture(img[0] if img is not sign else img[0].mean(axis=0, keepdims=True)),
                  cmap="gray" if img is not sign else "coolwarm",
                  vmin=-1 if img is sign else 0, vmax=1)
        ax.set_title(f"{title}\nprediction {class_name(classes, k)} (p = {p[k]:.2f})",
                     fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _example(net, x, y, eps_list, fgsm_curve, clean):
    """(index, eps) for the FGSM figure: the smallest eps that halves the accuracy (else
    the largest), and the first correctly classified image it fools (else the first)."""
    eps = max(eps_list) or 0.1
    if fgsm_curve:
        halved = [e for e, a in zip(eps_list, fgsm_curve) if e > 0 and a <= clean / 2]
        eps = min(halved) if halved else eps
    pred = net(x).argmax(axis=1)
    adv = fast_gradient_method(net, x, eps, np.inf, y=y, clip_min=0.0, clip_max=1.0)
    fooled = np.nonzero((pred == y) & (net(adv).argmax(axis=1) != y))[0]
    return (int(fooled[0]) if len(fooled) else 0), eps


def run(args):
    eps_list, attacks = args.eps, args.attacks
    fraction = 2.5 / args.pgd_steps if args.pgd_step_size is None else args.pgd_step_size
    net, x, y, name, names = model_and_data(args, args.batch)
    out = Path(args.output or "attack")
    clean = float((net(x).argmax(axis=1) == y).mean())
    print(f"model  {name}\nimages {len(x)}, clean accuracy {clean:.4f}")
    if sharded(args):
        print(f"attacking shard by shard on {where_run(args)}")
        kwargs = cluster_kwargs(args)
        curves = robust_accuracy(net, x, y, eps_list, attacks=attacks, nb_iter=args.pgd_steps,
                                 step_fraction=fraction, batch_size=args.attack_batch,
                                 seed=args.seed, shard_dir=out / "shards",
                                 progress=progress_enabled(args.progress), **kwargs)
        curves = {a: [float(v) for v in acc] for a, acc in curves.items()}
    else:
        total = len(x) * len(eps_list) * len(attacks)
        bar = make_bar(total, "attack", progress_enabled(args.progress))
        curves = accuracy_curve(net, x, y, eps_list, attacks, args.pgd_steps, fraction,
                                args.attack_batch, bar, seed=args.seed)
        bar.close()
    print("eps     " + "  ".join(f"{a.upper():>6}" for a in attacks))
    for i, eps in enumerate(eps_list):
        print(f"{eps:<7g} " + "  ".join(f"{curves[a][i]:6.3f}" for a in attacks))
    record = {"model": name, "classes": names and list(names), "images": len(x),
              "clean_accuracy": clean, "eps": eps_list,
              "accuracy": curves, "pgd": {"nb_iter": args.pgd_steps,
                                          "eps_iter_over_eps": fraction, "rand_init": True},
              "norm": "inf", "clip": [0.0, 1.0]}
    names = ["accuracy_vs_eps.png", "accuracy_vs_eps.json"]
    with output_dir(out, last="accuracy_vs_eps.json") as stage:
        plot_curve(eps_list, curves, stage / "accuracy_vs_eps.png",
                   f"{short_name(name)}, {len(x)} images\nPGD: {args.pgd_steps} steps of "
                   f"{fraction:.3g} eps, random start")
        if x.ndim == 4:
            n, example_eps = _example(net, x, y, eps_list, curves.get("fgsm"), clean)
            plot_fgsm_example(net, x[n], y[n], example_eps, stage / "fgsm_example.png",
                              names)
            names.append("fgsm_example.png")
        else:
            print(f"no fgsm_example.png: the inputs are not images (N, C, H, W) but "
                  f"{x.shape}")
        (stage / "accuracy_vs_eps.json").write_text(json.dumps(record, indent=1))
    written = [out / n for n in names]
    print(f"wrote {', '.join(map(str, written))}")
    return 0
