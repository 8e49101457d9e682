"""Training the colour-image zoo models, fwdderiv against PyTorch, alternating.

Run from the repository root: ``python -m benchmarks.training_peers --help``.

    python -m benchmarks.training_peers                          # synthetic data, both models
    python -m benchmarks.training_peers --dataset cifar10 --data-dir ~/data/cifar10
    python -m benchmarks.training_peers --dataset folder --data-dir ~/data/flower_photos

``resnet20`` (CIFAR-10, 3x32x32, 10 classes) and ``photo_cnn`` (a photo folder decoded at
3x64x64, 5 classes for the flower photos) train for one epoch with fwdderiv's NumPy
trainer (:func:`fwdderiv.training.fit`) and, from the same initial weights
(:func:`fwdderiv.to_torch`), in PyTorch: the same data order
(``np.random.default_rng(seed).permutation`` per epoch, as ``fit`` draws it), the same
recipe (:func:`fwdderiv.models.trained.recipe`: optimiser, batch size, learning rate,
momentum, weight decay), float32, one thread each (Numba, BLAS and torch).

The two alternate in rounds within the epoch, as :mod:`benchmarks.alternate` alternates
Jacobians: a ``fit`` callback, after every ``k``-th fwdderiv update, runs PyTorch on the
same ``k`` minibatches, so both meet the same load on this shared machine. The time of a
round is the training steps only (forward, loss, backward, update); the first minibatch
of each epoch marks the start of the clock and is not timed for either. Reported: the
timed seconds of each, the per-round ratio fwdderiv / PyTorch (median, min, max), both
networks' loss on a fixed probe batch after each round (the two runs follow the same
trajectory; computed outside the clock) and the held-out accuracy.

Without ``--dataset`` the images are synthetic (a class template plus noise, of the
right shape): their accuracy says nothing about the models, only the times mean something.
"""
import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.training import threads_set, warm_up

#: The models measured, with the data set whose recipe and images they take, and the
#: shape and class count of their synthetic stand-in.
CASES = {"resnet20": ("cifar10", (3, 32, 32), 10), "photo_cnn": ("folder", (3, 64, 64), 5)}

#: Synthetic training and held-out images per model when --train-size is not given.
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 512, 256

#: Images per forward pass when evaluating (bounds memory, not timed).
EVAL_BATCH = 500

#: Training images whose loss both networks report after every round.
PROBE = 64


def synthetic(shape, n_classes, n_train, n_test, seed=0):
    """A :class:`fwdderiv.datasets.Dataset` of images in [0, 1]: a random template per
    class, scaled by 0.3, plus uniform noise; labels uniform. Learnable, meaningless."""
    from fwdderiv.datasets import Dataset

    rng = np.random.default_rng(seed)
    templates = rng.uniform(-1, 1, (n_classes,) + shape).astype(np.float32)

    def draw(n):
        y = rng.integers(0, n_classes, n)
        x = 0.5 + 0.3 * templates[y] + rng.uniform(-0.35, 0.35, (n,) + shape)
        return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)

    (xa, ya), (xb, yb) = draw(n_train), draw(n_test)
    return Dataset(xa, ya, xb, yb, "synthetic",
                   f"synthetic {shape[0]}x{shape[1]}x{shape[2]} images, {n_classes} classes, "
                   f"{n_train}/{n_test} (seed {seed})")


def subsample(ds, n_train, n_test, seed=0):
    """``ds`` with at most ``n_train`` training and ``n_test`` held-out images, drawn
    without replacement with ``seed`` (in their original order); None keeps all."""
    from fwdderiv.datasets import Dataset

    rng = np.random.default_rng(seed)

    def take(x, y, n):
        if n is None or n >= len(y):
            return x, y
        keep = np.sort(rng.choice(len(y), n, replace=False))
        return x[keep], y[keep]

    xa, ya = take(ds.x_train, ds.y_train, n_train)
    xb, yb = take(ds.x_test, ds.y_test, n_test)
    return Dataset(xa, ya, xb, yb, ds.name, f"{ds.description}; using {len(ya)}/{len(yb)}",
                   ds.classes)


def torch_optimizer(model, hyper):
    """PyTorch's optimiser for :func:`fwdderiv.training.fit`'s ``hyper`` (the same rules:
    SGD with momentum and L2 weight decay, or Adam whose beta1 is ``momentum`` or 0.9)."""
    import torch

    if hyper["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=hyper["lr"], momentum=hyper["momentum"],
                               weight_decay=hyper["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=hyper["lr"],
                            betas=(hyper["momentum"] or 0.9, 0.999),
                            weight_decay=hyper["weight_decay"])


@dataclass
class Rounds:
    """What the alternation measured, per round: each framework's seconds, the images
    trained on, and each network's loss on the probe batch afterwards."""

    fwdderiv_seconds: list = field(default_factory=list)
    torch_seconds: list = field(default_factory=list)
    images: list = field(default_factory=list)
    fwdderiv_probe_loss: list = field(default_factory=list)
    torch_probe_loss: list = field(default_factory=list)


class TorchTwin:
    """A ``fit`` callback that trains the PyTorch copy on the minibatches fwdderiv has just
    trained on, in ``rounds`` rounds per epoch, timing both sides (see the module
    docstring)."""

    def __init__(self, model, ds, hyper, seed, rounds):
        import torch

        self.torch, self.model, self.hyper = torch, model, hyper
        self.x, self.y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
        n, bs = len(ds.y_train), hyper["batch_size"]
        rng = np.random.default_rng(seed)          # fit's draws: one permutation per epoch
        self.orders = [rng.permutation(n) for _ in range(hyper["epochs"])]
        self.per_epoch = -(-n // bs)
        # a round closes after these counts of timed updates of an epoch (evenly spaced)
        timed = self.per_epoch - 1
        self.ends = set(np.round(np.linspace(0, timed, min(rounds, timed) + 1)[1:]).astype(int))
        self.opt = torch_optimizer(model, hyper)
        self.rounds, self.pending, self.mark = Rounds(), [], None
        self.probe = (ds.x_train[:PROBE], ds.y_train[:PROBE])

    def batch(self, step):
        """(epoch, indices) of update ``step`` (from 1) in fit's order."""
        epoch, j = divmod(step - 1, self.per_epoch)
        bs = self.hyper["batch_size"]
        return epoch, self.orders[epoch][j * bs:(j + 1) * bs]

    def torch_step(self, epoch, idx):
        """One PyTorch update on ``idx``; its loss."""
        for group in self.opt.param_groups:
            group["lr"] = self.hyper["lr"] * self.hyper["lr_decay"] ** epoch
        index = self.torch.from_numpy(idx)
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x[index]), self.y[index])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def __call__(self, net, step):
        now = time.perf_counter()
        epoch, idx = self.batch(step)
        position = (step - 1) % self.per_epoch        # updates of this epoch before it
        if position == 0:
            self.model.train()
            self.torch_step(epoch, idx)          # untimed: marks the start of the clock
        else:
            self.pending.append((epoch, idx))
            if position not in self.ends:
                return                           # fwdderiv's round goes on, clock running
            self._round(net, now)
        self.mark = time.perf_counter()

    def _round(self, net, now):
        """Close a round: fwdderiv's time since the mark, then PyTorch on the same
        minibatches (timed), then both networks' probe loss (untimed)."""
        fwd = now - self.mark
        self.model.train()
        start = time.perf_counter()
        for epoch, idx in self.pending:
            self.torch_step(epoch, idx)
        r = self.rounds
        r.torch_seconds.append(time.perf_counter() - start)
        r.fwdderiv_seconds.append(fwd)
        r.images.append(int(sum(len(i) for _, i in self.pending)))
        fl, tl = probe_losses(net, self.model, *self.probe)
        r.fwdderiv_probe_loss.append(fl)
        r.torch_probe_loss.append(tl)
        self.pending = []


def probe_losses(net, model, x, y):
    """Mean cross-entropy of the fwdderiv network and the PyTorch model on ``(x, y)``,
    both in inference form (running BatchNorm statistics)."""
    import torch

    from fwdderiv.training import logits_part, softmax_cross_entropy

    ours = softmax_cross_entropy(logits_part(net)(x), y)[0]
    model.eval()
    with torch.no_grad():
        theirs = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)),
                                                   torch.from_numpy(y)).item()
    return float(ours), float(theirs)


def accuracy_torch(model, x, y):
    """Held-out accuracy of the PyTorch model in eval mode (running BatchNorm statistics)."""
    import torch

    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(x[i:i + EVAL_BATCH])).argmax(1).numpy()
                               for i in range(0, len(x), EVAL_BATCH)])
    return float(np.mean(pred == y)), pred


def load_case(model_name, args):
    """(dataset, the data set whose recipe ``model_name`` takes): real data when
    ``--dataset`` is given, else the synthetic stand-in of ``model_name``."""
    from fwdderiv.datasets import load_dataset

    recipe_data, shape, n_classes = CASES[model_name]
    if args.dataset is None:
        n_train = args.train_size or SYNTHETIC_TRAIN
        n_test = args.test_size or SYNTHETIC_TEST
        return synthetic(shape, n_classes, n_train, n_test, args.seed), recipe_data
    options = {"image_size": shape[1:]} if args.dataset == "folder" else {}
    ds = load_dataset(args.dataset, data_dir=args.data_dir, **options)
    return subsample(ds, args.train_size, args.test_size, args.seed), recipe_data


def run_case(model_name, args):
    """Train ``model_name`` one way and the other, alternating; return the result dict."""
    from fwdderiv.models.trained import build_model, recipe
    from fwdderiv.training import evaluate, fit, logits_part

    from benchmarks.peers import to_torch

    ds, recipe_data = load_case(model_name, args)
    hyper = {**recipe(model_name, recipe_data), "epochs": args.epochs}
    if args.batch_size:
        hyper["batch_size"] = args.batch_size
    net = build_model(model_name, ds.input_shape, seed=args.seed, n_classes=ds.n_classes)
    model = to_torch(logits_part(net), "float32")       # the same initial weights
    for q in model.parameters():
        q.requires_grad_(True)
    warm_up(build_model(model_name, ds.input_shape, seed=args.seed, n_classes=ds.n_classes),
            ds)
    warm_torch(model, ds, hyper)
    twin = TorchTwin(model, ds, hyper, args.seed, args.rounds)
    print(f"{model_name} on {ds.description}", file=sys.stderr)
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in hyper.items()), file=sys.stderr)
    twin.mark = time.perf_counter()
    fit(net, ds.x_train, ds.y_train, seed=args.seed, progress=False, num_threads=1,
        callbacks=[twin], **hyper)
    acc_fd = evaluate(net, ds.x_test, ds.y_test)
    acc_torch, pred_torch = accuracy_torch(model, ds.x_test, ds.y_test)
    agree = float(np.mean(net(ds.x_test).argmax(1) == pred_torch))
    return summarise(model_name, ds, hyper, twin.rounds, acc_fd, acc_torch, agree,
                     args.dataset is None)


def warm_torch(model, ds, hyper):
    """Two untimed PyTorch updates on a copy (lazy set-up, allocator), weights untouched."""
    import torch

    spare = copy.deepcopy(model).train()
    opt = torch_optimizer(spare, hyper)
    bs = hyper["batch_size"]
    x, y = torch.from_numpy(ds.x_train[:bs]), torch.from_numpy(ds.y_train[:bs])
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(spare(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def summarise(model_name, ds, hyper, rounds, acc_fd, acc_torch, agree, is_synthetic):
    """The result of one model as a JSON-ready dict (see :func:`print_case`)."""
    if not rounds.images:
        raise SystemExit(f"benchmarks.training_peers: {model_name}: no timed round; an "
                         f"epoch of {len(ds.y_train)} images in batches of "
                         f"{hyper['batch_size']} has a single update, and the first one "
                         "of each epoch is not timed; raise --train-size")
    fwd, tch = np.array(rounds.fwdderiv_seconds), np.array(rounds.torch_seconds)
    ratio = fwd / tch
    return {"model": model_name, "data": ds.description, "synthetic": is_synthetic,
            "recipe": hyper, "train_images": int(len(ds.y_train)),
            "test_images": int(len(ds.y_test)), "timed_images": int(sum(rounds.images)),
            "rounds": vars(rounds), "fwdderiv_seconds": float(fwd.sum()),
            "torch_seconds": float(tch.sum()), "ratio": float(fwd.sum() / tch.sum()),
            "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()), "fwdderiv_test_accuracy": acc_fd,
            "torch_test_accuracy": acc_torch, "prediction_agreement": agree}


def print_case(r):
    """The table of one model: times, ratio, probe losses and accuracies."""
    n = r["timed_images"]
    print(f"\n{r['model']}: {r['data']}")
    print(f"  one epoch ({r['train_images']} images, batch {r['recipe']['batch_size']}, "
          f"{r['recipe']['optimizer']}), {len(r['rounds']['images'])} alternating rounds, "
          f"{n} images timed, float32, 1 thread each")
    print(f"  {'':10} {'timed s':>9} {'ms/image':>9} {'probe loss after each round':>30} "
          f"{'held-out acc':>13}")
    for name, key in (("fwdderiv", "fwdderiv"), ("PyTorch", "torch")):
        loss = " ".join(f"{v:.3f}" for v in r["rounds"][f"{key}_probe_loss"])
        print(f"  {name:<10} {r[f'{key}_seconds']:>9.2f} {1e3 * r[f'{key}_seconds'] / n:>9.2f} "
              f"{loss:>30} {r[f'{key}_test_accuracy']:>13.4f}")
    print(f"  epoch time ratio fwdderiv / PyTorch: {r['ratio']:.2f}x; per round median "
          f"{r['ratio_median']:.2f}x (range {r['ratio_min']:.2f}-{r['ratio_max']:.2f}); "
          f"held-out predictions agree on {100 * r['prediction_agreement']:.1f}%")
    if r["synthetic"]:
        print("  synthetic data: the accuracies are meaningless (only the times are); pass "
              "--dataset and --data-dir for real images")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.training_peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(CASES), metavar="NAME,...",
                   help=f"comma separated, among {', '.join(CASES)} (default: both; with "
                        "--dataset, the model of that data set)")
    p.add_argument("--dataset", choices=("cifar10", "folder"), default=None,
                   help="real images: CIFAR-10's binary files (resnet20) or a photo folder, "
                        "one sub-folder per class, decoded at 64x64 (photo_cnn); default: "
                        "synthetic images of the right shape")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the data set's folder (see fwdderiv.datasets.load_dataset)")
    p.add_argument("--train-size", type=int, default=None, metavar="N",
                   help=f"training images (a seeded subsample of real data; synthetic "
                        f"default {SYNTHETIC_TRAIN})")
    p.add_argument("--test-size", type=int, default=None, metavar="N",
                   help=f"held-out images (synthetic default {SYNTHETIC_TEST})")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="override the recipe's batch size")
    p.add_argument("--rounds", type=int, default=5,
                   help="alternating rounds per epoch (default 5; at most one per timed "
                        "update)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    return p


def check_args(p, args):
    """The model list of ``args``, after checking the options' limits."""
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.dataset is not None:
        names = [m for m, (d, _, _) in CASES.items() if d == args.dataset]
    bad = sorted(set(names) - set(CASES))
    if bad or not names:
        p.error(f"--models expected names among {', '.join(CASES)}, got {args.models!r}")
    for opt in ("train_size", "test_size", "epochs", "rounds", "batch_size"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            p.error(f"--{opt.replace('_', '-')} must be at least 1, got {value}")
    if args.data_dir and args.dataset is None:
        p.error("--data-dir needs --dataset cifar10 or --dataset folder")
    return names


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    names = check_args(p, args)
    import fwdderiv  # noqa: F401  (imported before torch: same order as users)
    import torch

    with threads_set(1):
        results = [run_case(name, args) for name in names]
    for r in results:
        print_case(r)
    if args.json:
        env = {"numpy": np.__version__, "torch": torch.__version__,
               "torch_threads": torch.get_num_threads()}
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
