"""Jacobian regularisation against PyTorch, alternating A B A B in one process.

1. One training epoch of the worked example's convnet (``fwdderiv robustness``) with the
   penalty (output projections, n_proj = 1, lambda = 1): ``fit(..., jacobian_reg=1)``
   against PyTorch with double backward (``create_graph=True``), same network, data,
   batch 32, SGD momentum 0.9, one thread each.
2. The exact mean ||dZ/dx||_F^2 of held-out images: ``jacobian_norm`` (forward mode, the
   paper's, and reverse mode) against ``torch.func.vmap(torch.func.jacrev)``.

    python -m benchmarks.jacobian_reg --data-dir ../shared/data/mnist --train 960 --rounds 3
"""
import argparse

import numpy as np
import torch

import fwdderiv as fd
from benchmarks.attribution import alternate as timed_rounds
from fwdderiv.commands.robustness import worked_example_net
from fwdderiv.regularization import jacobian_norm
from fwdderiv.training import fit
from fwdderiv.training.loop import limited_threads


def torch_net(net):
    """The logits part of ``net`` as a ``torch.nn.Module`` with copies of its weights."""
    from fwdderiv.layers.heads import logits_net

    return fd.to_torch(logits_net(net))


def torch_epoch(model, x, y, lam, seed):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    model.train()
    for lo in range(0, len(x), 32):
        idx = order[lo:lo + 32]
        xb = x[idx].clone().requires_grad_(True)
        z = model(xb)
        loss = torch.nn.functional.cross_entropy(z, y[idx])
        v = torch.randn(z.shape, generator=g)
        v = v / v.norm(dim=1, keepdim=True)
        u, = torch.autograd.grad((z * v).sum(), xb, create_graph=True)
        pen = 0.5 * z.shape[1] * u.pow(2).flatten(1).sum(1).mean()
        opt.zero_grad()
        (loss + lam * pen).backward()
        opt.step()


def torch_norm(model, x):
    model.eval()
    def f(xi):
        return model(xi[None])[0]
    with torch.no_grad():
        J = torch.func.vmap(torch.func.jacrev(f))(x)
    return float(J.pow(2).flatten(1).sum(1).mean())


def alternate(a, b, rounds):
    """Medians of ``a()`` and ``b()`` timed in alternating rounds, and the per-round
    ratio a/b: median, min, max."""
    ta, tb = timed_rounds(a, b, rounds)
    ratio = np.array(ta) / np.array(tb)
    return np.median(ta), np.median(tb), np.median(ratio), ratio.min(), ratio.max()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train", type=int, default=960, help="training images in the epoch")
    ap.add_argument("--test", type=int, default=100, help="images for the exact norm")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    ds = (fd.datasets.load_dataset("mnist", data_dir=args.data_dir) if args.data_dir
          else fd.datasets.load_dataset("digits"))
    x, y = ds.x_train[:args.train], ds.y_train[:args.train]
    xt = ds.x_test[:args.test]
    torch.set_num_threads(1)
    net = worked_example_net(x.shape[1:])
    model = torch_net(net)
    X, Y, XT = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(xt)

    def ours_epoch():
        fit(net, x, y, epochs=1, batch_size=32, lr=0.01, momentum=0.9, progress=False,
            num_threads=1, jacobian_reg=1.0)

    print(f"{ds.name}: {len(x)} training images, {len(xt)} for the norm; "
          f"{args.rounds} alternating rounds, one thread each, shared machine")
    rows = [("epoch with penalty (n_proj=1)", ours_epoch,
             lambda: torch_epoch(model, X, Y, 1.0, 0), "torch double backward")]
    with limited_threads(1):
        rows += [("full Jacobian, forward mode",
                  lambda: net.jacobian(xt, mode="forward"), lambda: torch_norm(model, XT),
                  "torch vmap(jacrev)"),
                 ("exact norm, jacobian_norm", lambda: jacobian_norm(net, xt),
                  lambda: torch_norm(model, XT), "torch vmap(jacrev)")]
        ours_epoch()                        # warm-up (Numba compilation)
        torch_epoch(model, X[:64], Y[:64], 1.0, 0)
        print("| task | fwdderiv s | peer | peer s | ratio median (min..max) |")
        print("|---|---|---|---|---|")
        for name, a, b, peer in rows:
            ma, mb, r, lo, hi = alternate(a, b, args.rounds)
            print(f"| {name} | {ma:.3f} | {peer} | {mb:.3f} | {r:.2f} ({lo:.2f}..{hi:.2f}) |")


if __name__ == "__main__":
    main()
