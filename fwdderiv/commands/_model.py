"""The one model loader of the command line: a zoo name, a fwdderiv ``.npz``, an ``.onnx``
file, or ``file.py:factory`` returning a PyTorch module; and the user's own inputs
(``--inputs X.npy``), checked against the model before anything is computed."""
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.zoo import ZOO as _ZOO
from ._common import CommandError
from ._shapes import (Expected, InputError, check_array, declared_example,
                      expected_from_module, expected_from_net, refuse, shape_text)

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
        Per-example input shape the file declares (the ONNX graph's input, a PyTorch
        file's ``example_input``), else None.
    expected : Expected or None
        What is known of the input it takes, with how it is known (for messages).
    """
    net: object
    kind: str
    spec: str
    module: object = None
    input_shape: tuple = None
    expected: Expected = None


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


def load_model(spec, example=None, option="MODEL", inputs_option="--inputs", resize=None,
               per_example=None):
    """Load a model file as a fwdderiv network, after checking the inputs it will see.

    Parameters
    ----------
    spec : str
        ``path.npz``, ``path.onnx`` or ``path.py:factory``.
    example : ndarray of shape (N, *S), optional
        Inputs the model will see, checked against what the model takes before any
        framework runs (:func:`check_inputs`). A PyTorch model runs on them for the graph
        capture; without them, on the ``example_input`` its file declares.
    option : str
        The option or argument naming the model in error messages.
    inputs_option : str
        The option the inputs came from, for error messages.
    resize : str, optional
        The advice for images of the wrong size (default: resize them to H x W).
    per_example : bool, optional
        For an .onnx file: ``fwdderiv.from_onnx``'s ``per_example`` (None: its default).

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
    if per_example is not None and kind != "onnx":
        flag = "--per-example" if per_example else "--no-per-example"
        raise CommandError(f"{flag} applies to .onnx models; {spec} is a {kind} model "
                           "(a PyTorch module is traced one example at a time by itself "
                           "where needed); leave the option out")
    if kind == "torch":
        return _load_torch(spec, example, option, inputs_option, resize)
    if kind == "npz":
        path = _existing(spec, spec, option, "save a network with fwdderiv.save(net, path) "
                                             "or fwdderiv train --output")
        loaded = LoadedModel(fd.load(path), kind, spec)
    else:
        import onnx
        path = _existing(spec, spec, option, "export one with torch.onnx.export")
        proto = onnx.load(path)
        shape = _onnx_shape(proto)
        loaded = LoadedModel(fd.from_onnx(proto, per_example), kind, spec, input_shape=shape,
                             expected=None if shape is None else
                             Expected(shape, "the ONNX graph's input"))
    if example is not None:
        check_inputs(loaded.net, example, spec, inputs_option, loaded.expected, resize)
    return loaded


def _import_factory(spec, option):
    path, _, factory = spec.rpartition(":")
    _existing(spec, path, option, "give the path of a Python file and the name of a function "
                                  "in it, as model.py:make")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    source = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(source)
    make = getattr(source, factory, None)
    if not callable(make):
        raise CommandError(f"{option} {spec}: {path} defines no function {factory!r}")
    return source, make


def _load_torch(spec, example, option, inputs_option, resize):
    """``file.py:factory``: the module, its declared or first-layer input, the inputs
    checked against it, then the module run on them and captured."""
    import torch
    import fwdderiv as fd
    source, make = _import_factory(spec, option)
    module = make()
    if not isinstance(module, torch.nn.Module):
        raise CommandError(f"{option} {spec}: {make.__name__}() returned "
                           f"{type(module).__name__}, expected a torch.nn.Module")
    declared = declared_example(source, make, module, spec)
    expected = (Expected(tuple(declared.shape[1:]), "its example_input")
                if declared is not None else expected_from_module(module))
    if example is None and declared is None:
        raise CommandError(f"{option} {spec}: a PyTorch model needs example inputs: give "
                           "--inputs X.npy, or declare example_input in the file (see "
                           "docs/pages/checking.md)")
    example = declared if example is None else example
    check_inputs(None, example, spec, inputs_option,
                 expected if expected is not None and len(expected.shape) > 1 else None,
                 resize)
    module = module.eval()
    dtype = next(iter(module.parameters()), torch.zeros((), dtype=torch.float32)).dtype
    t = torch.from_numpy(np.ascontiguousarray(example[:2])).to(dtype)
    try:
        with torch.no_grad():
            module(t)
    except Exception as err:                # the module's own shape check
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = "" if expected is None else f"{expected.text()} ({expected.source}); "
        raise InputError(f"{inputs_option}: {spec} does not run on inputs of shape "
                         f"{shape_text(example.shape)}: PyTorch says {first!r}; it takes "
                         f"{where}{(resize or 'give inputs of the size it takes').format(size='H,W')}"
                         ", or declare example_input in the file to state the size") from None
    shape = None if declared is None else tuple(declared.shape[1:])
    return LoadedModel(fd.from_torch(module, t), "torch", spec, module=module,
                       input_shape=shape, expected=expected)


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


def check_inputs(net, x, model, option="--inputs", expected=None, resize=None):
    """Refuse inputs the network cannot take, in one line naming ``option``, the shape the
    model takes, the shape received and the fix.

    Parameters
    ----------
    net : Sequential or Graph or None
        The network; None checks only ``x`` itself and ``expected``.
    x : ndarray
        Must be float32 or float64 of shape (N, *S) with N >= 1, finite, and ``S`` a shape
        ``net`` accepts (and that agrees with ``expected``).
    model : str
        The model as named on the command line.
    option : str
        Where the inputs came from (``--inputs``, ``--dataset digits``).
    expected : Expected or tuple of int, optional
        What the model file declares; a tuple is a declared shape.
    resize : str, optional
        The advice for images of the right channels but the wrong size.

    Raises
    ------
    InputError
        A CommandError: ``cli.main`` prints it on one line and exits with status 2.
    """
    check_array(x, option)
    if expected is not None and not isinstance(expected, Expected):
        expected = Expected(tuple(expected), "the shape the model file declares")
    if expected is not None and not expected.fits(x.shape[1:]):
        raise refuse(expected, x.shape, model, option, resize)
    if net is None:
        return
    try:
        net.output_shape(tuple(x.shape[1:]))
    except (ValueError, TypeError) as err:
        detail = " ".join(str(err).split())
        found = expected or expected_from_net(net, x.shape)
        if found is None:
            raise InputError(f"{option}: {model} does not take inputs of shape "
                             f"{shape_text(x.shape)}: {detail}") from None
        raise refuse(found, x.shape, model, option, resize) from None
