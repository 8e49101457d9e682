"""The one model loader of the command line: a zoo name, a fwdderiv ``.npz``, an ``.onnx``
file, or ``file.py:factory`` returning a PyTorch module; and the user's own inputs
(``--inputs X.npy``), checked against the model before anything is computed."""
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.zoo import ZOO as _ZOO
from ._common import CommandError

#: What a MODEL argument may be, for help texts and errors.
MODEL_HELP = (f"a zoo name ({', '.join(_ZOO)}), a fwdderiv "
              ".npz (fwdderiv.save, fwdderiv train --output), an .onnx file, or "
              "file.py:factory (a function returning a torch.nn.Module)")


@dataclass
class LoadedModel:
    """A model given on the command line.

    Attributes
    ----------
    net : Sequential or Graph
        The fwdderiv network.
    kind : {"npz", "onnx", "torch"}
    spec : str
        The argument as given.
    module : torch.nn.Module or None
        The PyTorch module of a ``file.py:factory`` (eval mode), else None.
    input_shape : tuple of int or None
        Per-example input shape the file declares (ONNX), else None.
    """
    net: object
    kind: str
    spec: str
    module: object = None
    input_shape: tuple = None


def model_kind(spec, option="MODEL"):
    """``"zoo"``, ``"npz"``, ``"onnx"`` or ``"torch"`` (``file.py:factory``) for a MODEL
    argument; a CommandError naming ``option`` for anything else."""
    from .. import models
    if spec in models.ZOO:
        return "zoo"
    if spec.endswith(".npz"):
        return "npz"
    if spec.endswith(".onnx"):
        return "onnx"
    path, _, factory = spec.rpartition(":")
    if path.endswith(".py") and factory.isidentifier():
        return "torch"
    raise CommandError(f"{option} {spec}: unknown kind of model; expected {MODEL_HELP}")


def _existing(spec, path, option, fix):
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option} {spec}: no such file {str(path)!r}; {fix}")
    return path


def load_model(spec, example=None, option="MODEL"):
    """Load a model file as a fwdderiv network.

    Parameters
    ----------
    spec : str
        ``path.npz``, ``path.onnx`` or ``path.py:factory``.
    example : ndarray of shape (N, *S), optional
        Inputs the model will see; required for ``file.py:factory`` (PyTorch's graph
        capture runs the module on them).
    option : str
        The option or argument name used in error messages.

    Returns
    -------
    LoadedModel
    """
    import fwdderiv as fd
    kind = model_kind(spec, option)
    if kind == "zoo":
        raise CommandError(f"{option} {spec}: a zoo name is not a file; save the model with "
                           f"fwdderiv train --model {spec} --output {spec}.npz and pass the "
                           ".npz")
    if kind == "npz":
        path = _existing(spec, spec, option, "save a network with fwdderiv.save(net, path) "
                                             "or fwdderiv train --output")
        return LoadedModel(fd.load(path), kind, spec)
    if kind == "onnx":
        import onnx
        path = _existing(spec, spec, option, "export one with torch.onnx.export")
        proto = onnx.load(path)
        return LoadedModel(fd.from_onnx(proto), kind, spec, input_shape=_onnx_shape(proto))
    path, _, factory = spec.rpartition(":")
    _existing(spec, path, option, "give the path of a Python file and the name of a function "
                                  "in it, as model.py:make")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    source = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(source)
    make = getattr(source, factory, None)
    if not callable(make):
        raise CommandError(f"{option} {spec}: {path} defines no function {factory!r}")
    import torch
    module = make()
    if not isinstance(module, torch.nn.Module):
        raise CommandError(f"{option} {spec}: {factory}() returned "
                           f"{type(module).__name__}, expected a torch.nn.Module")
    if example is None:
        raise CommandError(f"{option} {spec}: a PyTorch model needs example inputs "
                           "(--inputs X.npy)")
    module = module.eval()
    dtype = next(iter(module.parameters()), torch.zeros((), dtype=torch.float32)).dtype
    t = torch.from_numpy(np.ascontiguousarray(example[:2])).to(dtype)
    try:
        with torch.no_grad():
            module(t)
    except Exception as err:                # the module's own shape check
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CommandError(f"{option} {spec}: the module does not accept inputs of shape "
                           f"(N, {', '.join(map(str, example.shape[1:]))}): {first}") from None
    return LoadedModel(fd.from_torch(module, t), kind, spec, module=module)


def _onnx_shape(proto):
    consts = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in consts]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return None if None in shape else shape


def load_inputs(path, option="--inputs"):
    """The array in an ``.npy`` file (never unpickled)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option} {path}: no such file; save the inputs with "
                                "numpy.save(path, x), x of shape (N, *S)")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise CommandError(f"{option} {path}: not a plain .npy array ({err}); save a float "
                           "array with numpy.save") from None
    if not isinstance(x, np.ndarray):
        raise CommandError(f"{option} {path}: expected one array saved with numpy.save "
                           "(.npy), got an .npz archive")
    return x


def check_inputs(net, x, model, option="--inputs", expected=None):
    """Refuse inputs the network cannot take, in one line naming ``option``.

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray
        Must be float32 or float64 of shape (N, *S) with N >= 1, finite, and ``S`` a shape
        ``net`` accepts (``expected`` when the model file declares one).
    model : str
        The model as named on the command line.
    """
    shape = "(" + ", ".join(map(str, x.shape)) + ")"
    if x.dtype not in (np.float32, np.float64):
        raise CommandError(f"{option}: expected float32 or float64 values, got {x.dtype} "
                           f"{shape}; convert with x.astype(numpy.float64) before saving")
    if x.ndim < 2 or x.shape[0] < 1:
        raise CommandError(f"{option}: expected shape (N, *S) with N >= 1 examples, got "
                           f"{shape}; add the batch axis with x[None]")
    if not np.isfinite(x).all():
        raise CommandError(f"{option}: expected finite values, got "
                           f"{int((~np.isfinite(x)).sum())} NaN or infinite entries")
    want = f"(N, {', '.join(map(str, expected))})" if expected else None
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise CommandError(f"{option}: {model} expects inputs of shape {want}, got {shape}")
    try:
        net.output_shape(tuple(x.shape[1:]))
    except ValueError as err:
        raise CommandError(f"{option}: {model} does not take inputs of shape {shape}: "
                           f"{' '.join(str(err).split())}") from None
