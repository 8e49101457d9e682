"""``fwdderiv check``: compare another framework's Jacobian with the float64 reference."""
import importlib.util
import json
from pathlib import Path

import numpy as np

#: Exit status when the Jacobians disagree beyond what kinks explain.
DISAGREE = 3


def add_parser(sub):
    p = sub.add_parser(
        "check", help="check another framework's Jacobian against the float64 reference",
        description="Compute the float64 Jacobian dF/dx of MODEL at the inputs and compare it "
                    "with J.npy (layout (N, *S_out, *S_in), as torch.func.vmap(jacfwd)) or, "
                    "without --jacobian, with PyTorch's own. Entries that differ only at "
                    "kinks (ReLU at 0, max-pool ties) are reported apart. Exit 0 when every "
                    f"other entry is within tolerance, {DISAGREE} otherwise.")
    p.add_argument("model", help="a fwdderiv .npz, an .onnx file, or file.py:factory "
                                 "returning a torch.nn.Module")
    p.add_argument("--inputs", required=True, help="X.npy of shape (N, *S)")
    p.add_argument("--jacobian", default=None, help="J.npy to check (default: PyTorch's)")
    p.add_argument("--tol", type=float, default=1e-8,
                   help="tolerance relative to the largest |J| (default: 1e-8)")
    p.add_argument("--json", default=None, help="write the full report to this file")
    p.set_defaults(run=run)
    return p


def load_model(spec, x):
    """(fwdderiv network, torch module or None) from an .npz, .onnx or file.py:factory."""
    import fwdderiv as fd
    if spec.endswith(".npz"):
        return fd.load(spec), None
    if spec.endswith(".onnx"):
        return fd.from_onnx(spec), None
    path, _, factory = spec.rpartition(":")
    if not path.endswith(".py") or not factory:
        raise ValueError(f"check: MODEL must be a .npz, an .onnx or file.py:factory, got {spec!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"check: no such file {path!r}")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = getattr(module, factory, None)
    if model is None:
        raise ValueError(f"check: {path} defines no {factory!r}")
    model = model()
    import torch
    model = model.eval()
    return fd.from_torch(model, torch.from_numpy(x[:2]).to(next(model.parameters()).dtype)), model


def torch_jacobian(net, model, x):
    import copy
    import torch
    import fwdderiv as fd
    model = copy.deepcopy(model).double() if model is not None else fd.to_torch(net).double()
    f = lambda v: model(v[None])[0]  # noqa: E731
    with torch.no_grad():
        return torch.func.vmap(torch.func.jacfwd(f))(torch.from_numpy(x)).numpy()


def run(args):
    from ..interop.check import compare
    x = np.load(args.inputs, allow_pickle=False).astype(np.float64)
    net, model = load_model(args.model, x)
    if args.jacobian:
        other, source = np.load(args.jacobian, allow_pickle=False), args.jacobian
    else:
        other, source = torch_jacobian(net, model, x), "PyTorch (torch.func.jacfwd, float64)"
    report = compare(net, x, other, tol=args.tol)
    report["checked"] = source
    print(f"fwdderiv check: {args.model} at {x.shape[0]} inputs; checked: {source}")
    if "message" in report:
        print(f"  {report['message']}")
    else:
        print(f"  max abs error {report['max_abs']:.3e}, relative {report['max_rel']:.3e} "
              f"(tolerance {args.tol:g} x max|J| = {report['scale']:.3e})")
        print(f"  beyond tolerance: {report['beyond_tolerance']} entries, "
              f"{report['kink_explained']} explained by kinks, {report['unexplained']} unexplained")
        for w in sorted(report["worst_per_output"], key=lambda w: -w["abs_error"])[:5]:
            print(f"  output {tuple(w['output'])}: worst abs {w['abs_error']:.3e} at example "
                  f"{w['example']}, input {tuple(w['input'])}")
    verdict = "PASS" if report["ok"] else f"FAIL: {report['verdict']}"
    print(verdict)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else DISAGREE
