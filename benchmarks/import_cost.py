"""Import cost: the Jacobian of a LeNet-5 imported with fwdderiv.from_torch against the same
network built natively, alternating A B A B, with the import time reported apart.

    python -m benchmarks.import_cost [--batch 16] [--repeats 7] [--dtype float32]
"""
import argparse
import statistics
import time

import numpy as np


def lenet5_torch():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = x.view(x.size(0), -1)
            return F.softmax(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))), dim=1)

    torch.manual_seed(0)
    return LeNet5().eval()


def native(model):
    import fwdderiv as fd
    layers = [fd.Conv2d(1, 6, 5), fd.ReLU(), fd.MaxPool2d(2), fd.Conv2d(6, 16, 5), fd.ReLU(),
              fd.MaxPool2d(2), fd.Flatten(), fd.Linear(400, 120), fd.ReLU(), fd.Linear(120, 84),
              fd.ReLU(), fd.Linear(84, 10), fd.Softmax()]
    torch_layers = [model.conv1, model.conv2, model.fc1, model.fc2, model.fc3]
    for layer, m in zip([l for l in layers if hasattr(l, "weight")], torch_layers):
        layer.weight = m.weight.detach().numpy().copy()
        layer.bias = m.bias.detach().numpy().copy()
    return fd.Sequential(layers)


def main(argv=None):
    import torch
    import fwdderiv as fd
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)
    model = lenet5_torch()
    t = time.perf_counter()
    imported = fd.from_torch(model, torch.zeros(1, 1, 32, 32))
    first_import = time.perf_counter() - t
    t = time.perf_counter()
    fd.from_torch(model, torch.zeros(1, 1, 32, 32))
    warm_import = time.perf_counter() - t
    built = native(model)
    x = np.random.default_rng(0).random((args.batch, 1, 32, 32)).astype(args.dtype)
    assert np.array_equal(imported.jacobian(x), built.jacobian(x))  # warm-up, same result
    times = {"imported": [], "native": []}
    for _ in range(args.repeats):
        for name, net in (("imported", imported), ("native", built)):
            t = time.perf_counter()
            net.jacobian(x)
            times[name].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["imported"], times["native"])]
    print(f"LeNet-5, batch {args.batch}, {args.dtype}, forward-mode Jacobian, {args.repeats} "
          f"alternating repeats (shared machine: noisy)")
    print(f"  from_torch: first call {first_import:.2f} s (torch.export warm-up), then "
          f"{warm_import:.2f} s")
    for name, ts in times.items():
        print(f"  {name:9s} median {statistics.median(ts) * 1e3:8.1f} ms  "
              f"(min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f})")
    print(f"  imported / native: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
