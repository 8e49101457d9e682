"""The figures and numbers of the walkthrough page (docs/pages/walkthrough.md), in one run.

    python -m benchmarks.walkthrough --dataset fashion-mnist --data-dir DIR --output OUT
    python -m benchmarks.walkthrough --dataset folder --data-dir flower_photos --output OUT

1. trains the data set's model (LeNet-5, ``fwdderiv.models.lenet5(in_size=28)``, for
   Fashion-MNIST and MNIST; ``photo_cnn`` for a photo folder decoded at 64x64) with the
   project's recipe, exactly as ``fwdderiv train --dataset ...`` does (same recipe, seed,
   data order and thread count: the same weights), with an
   :class:`~fwdderiv.attribution.AttributionRecorder` watching a few held-out images of
   different classes (gradient x input of their label at geometrically spaced updates);
   the model and the recorded frames are cached, so a second run skips training;
2. attacks the first ``--attack-images`` held-out images with
   :func:`fwdderiv.attacks.fast_gradient_method`: FGSM (``norm=np.inf``, step ``eps``)
   and the normalised L2 gradient step (``norm=2``) of the same L2 length as an
   unclipped FGSM step, ``eps * sqrt(D)``; images clipped to [0, 1];
3. runs ``fwdderiv attribute`` on the model with gradient x input, integrated gradients
   and occlusion.

It writes into OUT: ``training_attributions.png`` (strip) and ``.gif`` (animation),
``attack_accuracy.png``, ``attack_examples.png``, ``attributions.png`` and
``walkthrough.json`` with every number printed. The model (``MODEL-DATASET.npz``), the
frames and the output of ``fwdderiv attribute`` stay in ``--cache`` (default OUT/cache).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

#: The data sets the walkthrough runs on: 28x28 grey images, and colour photos.
DATASETS = ("fashion-mnist", "mnist", "folder")

#: Methods of ``fwdderiv attribute`` drawn by step 3.
ATTRIBUTE_METHODS = "input_x_gradient,integrated_gradients,occlusion"

#: Images attacked per call (bounds the memory of the caches).
ATTACK_BATCH = 500

#: Version of the cached training record; bump when what is cached changes.
CACHE_VERSION = 1


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.walkthrough", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the folder of the IDX files (default: the data set's folder in "
                        "$FWDDERIV_DATA_DIR or ~/.cache/fwdderiv/data)")
    p.add_argument("--output", type=Path, default=None, metavar="OUT",
                   help="folder for the figures and walkthrough.json (default: "
                        "walkthrough-DATASET)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="folder for the trained model, the recorded frames and the output "
                        "of fwdderiv attribute (default: OUT/cache)")
    p.add_argument("--image-size", default=None, metavar="H,W",
                   help="--dataset folder: the size the photos are decoded at (default 64,64)")
    p.add_argument("--model", default=None,
                   help="zoo model (default: lenet5 for fashion-mnist and mnist, photo_cnn "
                        "for a photo folder)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and shuffling")
    p.add_argument("--watch", type=int, default=4,
                   help="held-out images watched while training (default 4)")
    p.add_argument("--frames", type=int, default=24,
                   help="recorded updates, spaced geometrically (default 24)")
    p.add_argument("--attack-images", type=int, default=1000,
                   help="held-out images attacked (default 1000, at most all)")
    p.add_argument("--eps", default="0,0.02,0.05,0.1,0.2",
                   help="FGSM step sizes (L-inf), comma separated (default %(default)s)")
    p.add_argument("--example-eps", type=float, default=0.1,
                   help="the step of the example figure (default 0.1)")
    p.add_argument("--images", type=int, default=4,
                   help="held-out images of the attribution figure (default 4)")
    p.add_argument("--download", action="store_true",
                   help="download the data set's IDX files (for folder: TensorFlow's flower "
                        "photos) into --data-dir if they are missing, checksum-checked")
    p.add_argument("--retrain", action="store_true", help="train even if a model is cached")
    return p


def check_args(p, args):
    """Parse ``--eps`` and check the options' limits (argparse errors)."""
    try:
        args.eps = [float(e) for e in args.eps.split(",") if e.strip()]
    except ValueError:
        p.error(f"--eps expected comma-separated numbers, got {args.eps!r}")
    if not args.eps or min(args.eps) < 0:
        p.error(f"--eps expected sizes >= 0, got {args.eps}")
    if args.example_eps <= 0:
        p.error(f"--example-eps must be > 0, got {args.example_eps}")
    if args.image_size is not None:
        try:
            args.image_size = tuple(int(v) for v in args.image_size.split(","))
        except ValueError:
            args.image_size = ()
        if args.dataset != "folder" or len(args.image_size) != 2 or min(args.image_size) < 8:
            p.error(f"--image-size expected H,W (each at least 8) with --dataset folder, got "
                    f"{args.image_size!r} with --dataset {args.dataset}")
    for name in ("epochs", "watch", "frames", "attack_images", "images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    from fwdderiv.models.trained import default_model, recipe

    args.model = args.model or default_model(args.dataset)
    try:
        recipe(args.model, args.dataset)
    except ValueError as err:
        p.error(f"--model {args.model}: {err}")
    args.output = args.output or Path(f"walkthrough-{args.dataset}")
    args.cache = args.cache or args.output / "cache"


def watched_images(ds, n):
    """Indices of ``n`` held-out images: the first of each class in class order, then
    the next unused ones, so the rows show different classes."""
    firsts = [int(np.flatnonzero(ds.y_test == k)[0]) for k in range(ds.n_classes)
              if np.any(ds.y_test == k)]
    rest = [i for i in range(len(ds.y_test)) if i not in firsts]
    return (firsts + rest)[:n]


def record_schedule(n_updates, frames):
    """About ``frames`` update numbers from 1 to ``n_updates``, spaced geometrically
    (early training, where attributions form, gets most frames); always the last."""
    steps = np.unique(np.round(np.geomspace(1, n_updates, frames)).astype(int))
    return [int(s) for s in steps]


def model_path(args):
    """Where the trained network is cached: ``CACHE/MODEL-DATASET.npz``."""
    return args.cache / f"{args.model}-{args.dataset}.npz"


def training_settings(args, ds, hyper, watched):
    """What the cached model and frames depend on (compared before reusing them)."""
    return {"version": CACHE_VERSION, "dataset": ds.name, "data": ds.description,
            "model": args.model, "seed": args.seed, "recipe": hyper, "watched": watched,
            "frames": args.frames}


def train(args, ds):
    """Step 1: the trained network, its recorder and the training record; from the cache
    when it holds the same settings (unless ``--retrain``)."""
    import fwdderiv as fd
    from fwdderiv.attribution import AttributionRecorder
    from fwdderiv.models.trained import TRAIN_THREADS, build_model, recipe
    from fwdderiv.training import evaluate, fit, save_checkpoint

    hyper = recipe(args.model, ds.name)
    if args.epochs:
        hyper["epochs"] = args.epochs
    watched = watched_images(ds, args.watch)
    settings = training_settings(args, ds, hyper, watched)
    x_w, y_w = ds.x_test[watched], ds.y_test[watched]
    n_updates = hyper["epochs"] * -(-len(ds.y_train) // hyper["batch_size"])
    rec = AttributionRecorder(x_w, y_w, method="input_x_gradient", classes=ds.classes,
                              record_steps=record_schedule(n_updates, args.frames))
    paths = {"model": model_path(args), "frames": args.cache / "frames.npz",
             "record": args.cache / "training.json"}
    cached = _read_cache(paths, settings) if not args.retrain else None
    if cached is not None:
        _restore(rec, paths["frames"])
        return fd.load(paths["model"]), rec, cached
    net = build_model(args.model, ds.input_shape, seed=args.seed, n_classes=ds.n_classes)
    print(f"training {args.model} on {ds.description}", file=sys.stderr)
    history = fit(net, ds.x_train, ds.y_train, seed=args.seed, num_threads=TRAIN_THREADS,
                  callbacks=[rec], progress=None, **hyper)
    args.cache.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, paths["model"])
    np.savez(paths["frames"], steps=np.array(rec.steps), frames=np.stack(rec.frames),
             outputs=np.stack(rec.outputs))
    record = {"settings": settings, "loss": history.loss, "accuracy": history.accuracy,
              "seconds": history.seconds, "updates": n_updates,
              "test_accuracy": evaluate(net, ds.x_test, ds.y_test),
              "test_images": int(len(ds.y_test)), "recorded_steps": rec.steps}
    paths["record"].write_text(json.dumps(record, indent=1))
    return net, rec, {**record, "cached": False}


def _read_cache(paths, settings):
    """The cached training record if every file is there and its settings match."""
    try:
        record = json.loads(paths["record"].read_text())
    except (OSError, ValueError):
        return None
    if record.get("settings") != json.loads(json.dumps(settings)):
        return None
    if not (paths["model"].exists() and paths["frames"].exists()):
        return None
    print(f"using the model cached in {paths['model']} (--retrain to train again)",
          file=sys.stderr)
    return {**record, "cached": True}


def _restore(rec, path):
    """Put the cached frames back into the recorder (its public lists)."""
    with np.load(path, allow_pickle=False) as f:
        rec.steps = [int(s) for s in f["steps"]]
        rec.frames = list(f["frames"])
        rec.outputs = list(f["outputs"])


def draw_training(rec, out):
    """The figures of the recorded frames: the strip and the animation."""
    rec.save_strip(out / "training_attributions.png", max_frames=8)
    rec.save_gif(out / "training_attributions.gif", duration=250)


def _step(net, x, y, eps, norm):
    """``fast_gradient_method`` on the true labels, images clipped to [0, 1], in batches."""
    from fwdderiv.attacks import fast_gradient_method

    return np.concatenate([
        fast_gradient_method(net, x[i:i + ATTACK_BATCH], eps, norm, y=y[i:i + ATTACK_BATCH],
                             clip_min=0.0, clip_max=1.0)
        for i in range(0, len(x), ATTACK_BATCH)])


def attack(net, ds, eps_list, n):
    """Step 2: accuracy of ``net`` on the first ``n`` held-out images after FGSM of each
    ``eps`` and after the L2 step of length ``eps * sqrt(D)``, with the sizes of the
    perturbations actually made (after clipping)."""
    from fwdderiv.training import predict

    x, y = ds.x_test[:n], ds.y_test[:n]
    D = int(np.prod(x.shape[1:]))
    clean = predict(net, x).argmax(1)
    res = {"images": int(len(x)), "features": D, "clean_accuracy": float(np.mean(clean == y)),
           "eps": eps_list, "fgsm": {"accuracy": [], "max_linf": [], "mean_l2": []},
           "l2_step": {"eps": [e * np.sqrt(D) for e in eps_list], "accuracy": [],
                       "max_l2": [], "mean_l2": []}}
    for eps in eps_list:
        for key, norm, size in (("fgsm", np.inf, eps), ("l2_step", 2, eps * np.sqrt(D))):
            x_adv = _step(net, x, y, size, norm)
            delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
            l2 = np.linalg.norm(delta, axis=1)
            r = res[key]
            r["accuracy"].append(float(np.mean(predict(net, x_adv).argmax(1) == y)))
            r["mean_l2"].append(float(l2.mean()))
            if key == "fgsm":
                r["max_linf"].append(float(np.abs(delta).max()))
            else:
                r["max_l2"].append(float(l2.max()))
    return res


def draw_attack_curve(res, path, title):
    """Accuracy against the FGSM step, both attacks."""
    from fwdderiv.attacks.plots import require_matplotlib

    plt = require_matplotlib("benchmarks.walkthrough")
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.plot(res["eps"], res["fgsm"]["accuracy"], "o-", label="FGSM (L-inf step eps)")
    ax.plot(res["eps"], res["l2_step"]["accuracy"], "s--",
            label=f"L2 step of length eps*sqrt({res['features']})")
    ax.set_xlabel("eps")
    ax.set_ylabel(f"accuracy ({res['images']} held-out images)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_attack_examples(net, ds, idx, eps, path, title):
    """Rows: held-out images ``idx``; columns: the image, FGSM's, its perturbation, the L2
    step's, its perturbation (summed over the channels); titles: the predicted class and
    its probability."""
    from fwdderiv.attacks.plots import require_matplotlib

    plt = require_matplotlib("benchmarks.walkthrough")
    x, y = ds.x_test[idx], ds.y_test[idx]
    D = int(np.prod(x.shape[1:]))
    x_inf, x_2 = _step(net, x, y, eps, np.inf), _step(net, x, y, eps * np.sqrt(D), 2)
    columns = [("image", x), (f"FGSM, eps {eps:g}", x_inf), ("x' - x", x_inf - x),
               (f"L2 step, {eps * np.sqrt(D):.2f}", x_2), ("x' - x", x_2 - x)]
    fig, axes = plt.subplots(len(x), len(columns), figsize=(1.6 * len(columns), 1.7 * len(x)),
                             squeeze=False)
    for c, (name, images) in enumerate(columns):
        probs = None if name == "x' - x" else net(images)
        for r in range(len(x)):
            ax = axes[r, c]
            if probs is None:
                d = images[r].sum(axis=0)
                top = float(np.abs(d).max()) or 1.0
                ax.imshow(d, cmap="bwr", vmin=-top, vmax=top)
                ax.set_title(name, fontsize=6)
            else:
                k = int(probs[r].argmax())
                ax.imshow(_picture(images[r]), cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{name}\n{ds.classes[k]} ({probs[r, k]:.2f})", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _picture(img):
    """An image (C, H, W) in [0, 1] as matplotlib draws it: grey (H, W) or RGB (H, W, 3)."""
    return img[0] if img.shape[0] == 1 else np.clip(np.moveaxis(img, 0, -1), 0, 1)


def attribute_command(args):
    """Step 3's ``fwdderiv attribute`` arguments (its output goes to the cache)."""
    argv = ["attribute", "--dataset", args.dataset, "--model", str(model_path(args)),
            "--methods", ATTRIBUTE_METHODS, "--classes", "label", "--batch", str(args.images),
            "--output", str(args.cache / "attribute"), "--no-progress"]
    if args.data_dir:
        argv[3:3] = ["--data-dir", str(args.data_dir)]
    if args.image_size:
        argv[3:3] = ["--image-size", ",".join(map(str, args.image_size))]
    return argv


def attribute(args):
    """Step 3: run ``fwdderiv attribute``; its figure is copied to OUT/attributions.png;
    returns its summary (the largest completeness error of integrated gradients)."""
    from fwdderiv.cli import main as fwdderiv_main

    argv = attribute_command(args)
    code = fwdderiv_main(argv)
    if code != 0:
        raise SystemExit(f"benchmarks.walkthrough: fwdderiv {' '.join(argv)} failed with "
                         f"status {code}")
    folder = args.cache / "attribute"
    shutil.copyfile(folder / "attributions.png", args.output / "attributions.png")
    summary = json.loads((folder / "attributions.json").read_text())
    ig = summary["methods"]["integrated_gradients"]
    shown = ["DATA_DIR" if a == str(args.data_dir) else
             "MODEL.npz" if a == str(model_path(args)) else
             "ATTRIBUTE_OUT" if a == str(folder) else a for a in argv]
    return {"command": "fwdderiv " + " ".join(shown), "images": args.images,
            "methods": ATTRIBUTE_METHODS.split(","),
            "ig_max_abs_convergence_delta": ig["max_abs_convergence_delta"],
            "arrays": "CACHE/attribute/attributions.npz"}


def report(rec):
    """Print the numbers of ``walkthrough.json``."""
    t, a, g = rec["training"], rec["attacks"], rec["attributions"]
    print(f"{rec['model']} on {rec['data']}")
    print(f"training: {len(t['loss'])} epochs, loss per epoch "
          + " ".join(f"{v:.4f}" for v in t["loss"])
          + f"; held-out accuracy {t['test_accuracy']:.4f} ({t['test_images']} images)"
          + (" [cached model]" if t["cached"] else ""))
    print(f"recorded gradient x input after updates {t['recorded_steps']}")
    print(f"attacks on {a['images']} held-out images, clean accuracy {a['clean_accuracy']:.4f}")
    print(f"  {'eps':>6} {'FGSM acc':>9} {'max|d|_inf':>11} {'L2 step':>8} {'L2 acc':>7} "
          f"{'max|d|_2':>9}")
    for i, eps in enumerate(a["eps"]):
        f, l2 = a["fgsm"], a["l2_step"]
        print(f"  {eps:>6.3f} {f['accuracy'][i]:>9.4f} {f['max_linf'][i]:>11.4f} "
              f"{l2['eps'][i]:>8.3f} {l2['accuracy'][i]:>7.4f} {l2['max_l2'][i]:>9.4f}")
    print(f"integrated gradients: completeness |sum A - (F(x) - F(0))| <= "
          f"{g['ig_max_abs_convergence_delta']:.2e} ({g['images']} images, every class)")


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    from fwdderiv.datasets import load_dataset

    download = "flowers" if args.download and args.dataset == "folder" else args.download
    options = {"image_size": args.image_size} if args.image_size else {}
    ds = load_dataset(args.dataset, data_dir=args.data_dir, download=download, **options)
    args.output.mkdir(parents=True, exist_ok=True)
    net, rec, training = train(args, ds)
    draw_training(rec, args.output)
    title = f"{args.model}, {ds.name}"
    attacks = attack(net, ds, args.eps, args.attack_images)
    draw_attack_curve(attacks, args.output / "attack_accuracy.png", title)
    draw_attack_examples(net, ds, training["settings"]["watched"], args.example_eps,
                         args.output / "attack_examples.png", title)
    record = {"command": f"python -m benchmarks.walkthrough --dataset {args.dataset}"
                         + (" --data-dir DATA_DIR" if args.data_dir else "") + " --output OUT",
              "dataset": ds.name, "data": ds.description, "classes": list(ds.classes),
              "model": args.model, "seed": args.seed, "recipe": training["settings"]["recipe"],
              "training": training, "attacks": attacks, "example_eps": args.example_eps,
              "attributions": attribute(args),
              "files": ["training_attributions.png", "training_attributions.gif",
                        "attack_accuracy.png", "attack_examples.png", "attributions.png"]}
    (args.output / "walkthrough.json").write_text(json.dumps(record, indent=1) + "\n")
    report(record)
    print(f"wrote {', '.join(record['files'])} and walkthrough.json into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
