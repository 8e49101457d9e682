"""Import a PyTorch module as a fwdderiv network, through ``torch.export``.

Why ``torch.export`` and not ``torch.fx.symbolic_trace``: a forward method such as
``F.avg_pool2d(out, out.size()[3])`` or ``x.view(x.size(0), -1)`` reads sizes of its
input. Symbolic tracing turns those sizes into proxies, so the kernel size of the pooling is
unknown at import time; ``torch.export`` runs the module on fake tensors, keeps the batch
axis symbolic (declared dynamic here) and every other size concrete, records ATen
operators with their resolved arguments and, per node, the module path
(``nn_module_stack``) and source line (``stack_trace``) that error messages quote.
Parameters and buffers are lifted to graph inputs (``graph_signature``) and copied from
the exported program's state dict unchanged, in PyTorch's layout.
"""
import copy
import operator
import re
import warnings

import numpy as np

from .. import registry
from .torch_ops import RULES


class UnsupportedOperatorError(ValueError):
    """A PyTorch operator or argument that fwdderiv cannot represent exactly.

    ``batch_moved`` is True when the operator's result does not keep the batch axis first
    (from_torch then tries the per-example trace)."""

    batch_moved = False


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def _source(node):
    """The innermost user frame (outside torch) of a node's stack trace, or None."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")]
    if not user:
        return None
    path, line, func, code = user[-1]
    return f'{path}:{line} in {func}: {code.strip()}'


def _module_path(node):
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "<top level>"
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return f"{path or '<root>'} ({cls.rsplit('.', 1)[-1]})"


def _op_name(target):
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))


def _arguments(node):
    """The operator's arguments by schema name, defaults filled in."""
    if node.target is operator.getitem:
        return {"self": node.args[0], "index": node.args[1]}
    schema = node.target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


class _Context:
    """State of one import: values by fx node, lifted tensors, emitted fwdderiv nodes."""

    def __init__(self, tensors, batch):
        import fwdderiv
        self.fd, self.tensors, self.batch = fwdderiv, tensors, batch
        self.values, self.nodes, self.tuples, self.node = {}, [], set(), None
        self.ahead = set()      # nodes given their values by an earlier rule
        self._names = set()

    # -- errors --------------------------------------------------------------------
    def fail(self, what, fix, batch_moved=False):
        node = self.node
        where = f"module {_module_path(node)}, operator {node.target}"
        src = _source(node)
        where += f", at {src}" if src else ""
        err = UnsupportedOperatorError(f"from_torch: {where}: {what} is not supported; {fix}")
        err.batch_moved = batch_moved
        raise err

    # -- reading the graph ---------------------------------------------------------
    def value(self, arg):
        if not hasattr(arg, "name") or arg.name not in self.values:
            self.fail(f"an operand {arg!r} that is not a value computed from the input",
                      "only parameters of Linear/Conv2d/BatchNorm may be constants")
        return self.values[arg.name]

    def shape(self, arg):
        return tuple(int(s) for s in arg.meta["val"].shape[1:])

    def out_shape(self):
        return tuple(int(s) for s in self.node.meta["val"].shape[1:])

    def constant(self, arg):
        if hasattr(arg, "name") and arg.name in self.tensors:
            return self.tensors[arg.name]
        return None

    def param(self, arg):
        c = self.constant(arg)
        if c is None:
            self.fail(f"a weight {arg!r} computed inside forward",
                      "keep weights as parameters or buffers")
        return c.copy()

    # -- building ------------------------------------------------------------------
    def has(self, name):
        return getattr(self.fd, name, None) is not None or name in registry.layer_types()

    def layer(self, name, **kwargs):
        cls = getattr(self.fd, name, None) or registry.layer_types().get(name)
        if cls is None:
            self.fail(f"{name} (this fwdderiv version has no such layer)",
                      "rewrite the model with supported layers or update fwdderiv")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            self.fail(f"{name}({args}) ({err})", "change that argument")

    def emit(self, layer, inputs):
        inputs = [self.value(i) if hasattr(i, "name") else i
                  for i in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        name, k = self.node.name, 1
        while name in self._names or name == "input":
            name, k = f"{self.node.name}_{k}", k + 1
        self._names.add(name)
        self.nodes.append((name, layer, inputs[0] if len(inputs) == 1 else inputs))
        return name


def _lifted_tensors(ep):
    """Placeholder name -> NumPy copy of the parameter, buffer or constant it stands for."""
    sig, state = ep.graph_signature, ep.state_dict
    constants = getattr(ep, "constants", {}) or {}
    out = {}
    maps = [(sig.inputs_to_parameters, state), (sig.inputs_to_buffers, state)]
    lifted = getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {}
    maps.append((lifted, constants))
    for mapping, store in maps:
        for placeholder, target in mapping.items():
            t = store[target] if target in store else constants.get(target)
            if t is not None:
                out[placeholder] = t.detach().cpu().numpy().copy()
    return out


def _fold(ctx, node):
    """Evaluate, with PyTorch, a node whose operands are all constants (parameters,
    buffers, earlier folds), keeping the result as a constant; True when it was one."""
    import torch
    operands = node.all_input_nodes
    if not operands or any(a.name not in ctx.tensors for a in operands):
        return False
    val = node.meta.get("val")
    if _op_name(node.target) in ("expand", "expand_as") and getattr(val, "ndim", 0) and \
            str(val.shape[0]) == ctx.batch:
        return False    # a constant broadcast over the batch (vmap's cat of a class token)

    def real(a):
        return torch.from_numpy(ctx.tensors[a.name].copy())

    args = torch.fx.node.map_arg(node.args, real)
    kwargs = torch.fx.node.map_arg(node.kwargs, real)
    with torch.no_grad():
        out = node.target(*args, **kwargs)
    ctx.tensors[node.name] = out.detach().cpu().numpy().copy()
    return True


def _export(module, x):
    """The exported program of ``module`` with a dynamic batch axis, and False; for a
    module whose code ties the batch to another size, that of :func:`_export_per_example`,
    and True."""
    import torch
    from torch.export import Dim, export
    batch = Dim("batch")
    try:
        return export(module, (x,), dynamic_shapes=({0: batch},)), False
    except Exception as err:  # torch raises several classes for a specialised batch axis
        text = str(err)
        if not ("batch" in text and ("specializ" in text or "Constraint" in text
                                     or "constraint" in text)):
            raise
        first = _first_line(err)
    try:
        return _export_per_example(module, x), True
    except Exception as err:
        raise ValueError(
            "from_torch: the module fixes the batch size (for example x.view(16, -1)), or "
            "mixes examples, and tracing it one example at a time under torch.vmap did not "
            f"work either ({type(err).__name__}: {_first_line(err)}); "
            "write sizes from the input, x.view(x.size(0), -1) or torch.flatten(x, 1), and "
            "map examples independently, so the imported network takes any batch. "
            f"torch.export said: {first}") from err


def _first_line(err):
    """The first line of an exception's message, or its class name if it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


#: The batch size a module that folds the batch into another axis is traced with: any
#: size works afterwards; an odd one is unlikely to equal an axis of the model.
PER_EXAMPLE_BATCH = 5


def _per_example(module):
    """``module`` applied to each example alone, as ``torch.vmap`` over the batch of
    ``module(v[None])[0]``: in the traced program every batched operation keeps the batch
    axis first, whatever the module does with the batch of one inside (Swin's window
    partition folds the windows into the batch axis and reads the batch size back as
    ``windows.shape[0] // n_windows``; under vmap those sizes are those of one example)."""
    import torch

    class PerExample(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.vmap(lambda v: self.inner(v[None])[0])(x)

    return PerExample(module)


def _eval_batch_norm_as_arithmetic():
    """A ``TorchFunctionMode`` that computes ``F.batch_norm`` with running statistics
    (eval mode) as ``(x - mean) * (weight / sqrt(var + eps)) + bias`` along axis 1: vmap's
    rule for the fused operator folds the vmap batch into the channels, which moves the
    batch axis; the arithmetic keeps it first."""
    import torch
    from torch.nn import functional as F
    from torch.overrides import TorchFunctionMode

    class EvalBatchNorm(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is not F.batch_norm:
                return func(*args, **kwargs)
            names = ("input", "running_mean", "running_var", "weight", "bias", "training",
                     "momentum", "eps")
            a = dict(zip(names, args), **kwargs)
            if a.get("training", False) or a.get("running_mean") is None:
                return func(*args, **kwargs)
            x = a["input"]
            shape = (1, -1) + (1,) * (x.ndim - 2)
            scale = torch.rsqrt(a["running_var"] + a.get("eps", 1e-5))
            if a.get("weight") is not None:
                scale = scale * a["weight"]
            y = (x - a["running_mean"].reshape(shape)) * scale.reshape(shape)
            return y if a.get("bias") is None else y + a["bias"].reshape(shape)

    return EvalBatchNorm()


def _export_per_example(module, x):
    """The exported program of :func:`_per_example` (``module``), traced with a fixed batch
    of :data:`PER_EXAMPLE_BATCH` copies of the examples of ``x`` and lowered to ATen
    operators (vmap's batching rules applied). The module's own output on that batch must
    equal the per-example one: a module that mixes examples is refused.

    Taken where the batch cannot stay symbolic (:func:`_export`) and where a result moves
    the batch axis (``nn.MultiheadAttention`` works sequence first, batch second: under
    vmap the batch it sees is one example's, and vmap's own batch axis stays first).
    Eval-mode batch norm is traced as its arithmetic
    (:func:`_eval_batch_norm_as_arithmetic`)."""
    import torch
    from torch.export import export
    from torch.nn.attention import SDPBackend, sdpa_kernel
    xb = x[torch.arange(PER_EXAMPLE_BATCH) % x.shape[0]]
    xb = xb + 0.125 * torch.arange(PER_EXAMPLE_BATCH, dtype=x.dtype).reshape(
        (-1,) + (1,) * (x.ndim - 1))                # distinct examples
    wrapped = _per_example(module)
    # the batched and the per-example runs take different kernels: equal to rounding
    rtol = 1e-7 if x.dtype == torch.float64 else 1e-3
    # the math attention (products and a softmax) has vmap batching rules; the fused CPU
    # kernel has none, and vmap would unroll it over the traced batch
    with warnings.catch_warnings(), sdpa_kernel([SDPBackend.MATH]), \
            _eval_batch_norm_as_arithmetic():
        warnings.simplefilter("ignore")             # vmap's "performance drop" notes
        whole, each = module(xb), wrapped(xb)
        if not (torch.is_tensor(whole) and whole.shape == each.shape and torch.allclose(
                whole, each, rtol=rtol, atol=rtol * float(each.abs().max()))):
            raise ValueError("its output for a batch differs from its outputs for each "
                             "example alone, so it mixes examples")
        return export(wrapped, (xb,), strict=False).run_decompositions({})


def _prune(nodes, output):
    """Keep the nodes the output depends on (exports can leave unused values)."""
    needed, keep = {output}, []
    for name, layer, inputs in reversed(nodes):
        if name in needed:
            keep.append((name, layer, inputs))
            needed.update([inputs] if isinstance(inputs, str) else inputs)
    return keep[::-1]


def from_torch(module, example_input):
    """Import a PyTorch module as a fwdderiv network computing the same function.

    Parameters
    ----------
    module : torch.nn.Module
        The model. Training-mode modules are imported in eval mode from a copy (the
        original is left untouched) with a warning: the forward derivative of a network is
        that of its inference function.
    example_input : torch.Tensor or ndarray of shape (N, *S)
        One batch, used to trace the module; any batch size works afterwards. A module
        whose code ties the batch size to another size (Swin's windows folded into the
        batch axis) is traced one example at a time under ``torch.vmap`` instead, and
        refused if its output for a batch is not its output for each example alone.

    Returns
    -------
    Sequential or Graph
        A :class:`fwdderiv.Sequential` when the model is a chain, else a
        :class:`fwdderiv.Graph`; weights are copied exactly, in PyTorch's layout and dtype.

    Raises
    ------
    UnsupportedOperatorError
        (a ``ValueError``) naming the module path, the operator and the source line of the
        first operation fwdderiv cannot represent.

    Examples
    --------
    >>> import torch, fwdderiv as fd
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> net = fd.from_torch(model, torch.zeros(2, 4))
    >>> net.jacobian(torch.ones(5, 4).numpy()).shape
    (5, 3, 4)
    """
    import torch
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    x = torch.as_tensor(np.asarray(example_input) if not torch.is_tensor(example_input)
                        else example_input)
    if x.ndim < 2:
        raise ValueError(f"from_torch: example_input must be a batch (N, *S), got shape "
                         f"{tuple(x.shape)}; add a batch axis with x[None]")
    params = list(module.parameters())
    if params and x.dtype != params[0].dtype:
        x = x.to(params[0].dtype)
    if x.shape[0] == 1:  # torch.export specialises a batch of one; trace with two
        x = torch.cat([x, x])
    if module.training:
        warnings.warn("from_torch: the module is in training mode; importing an eval-mode "
                      "copy (module.eval() on a deep copy)", stacklevel=2)
        module = copy.deepcopy(module).eval()
    with torch.no_grad():
        ep, per_example = _export(module, x)
        try:
            return _build(ep)
        except UnsupportedOperatorError as err:
            if per_example or not err.batch_moved:
                raise
            try:                # nn.MultiheadAttention: sequence first, batch second
                return _build(_export_per_example(module, x))
            except Exception as again:
                raise UnsupportedOperatorError(
                    f"{err} (traced one example at a time under torch.vmap instead, it did "
                    f"not import either: {_first_line(again)})") from None


def _build(ep):
    import torch
    from .. import Graph, Sequential
    tensors = _lifted_tensors(ep)
    user_inputs = [s.arg.name for s in ep.graph_signature.input_specs
                   if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    (x_name,) = user_inputs
    graph = ep.graph
    x_node = next(n for n in graph.nodes if n.name == x_name)
    ctx = _Context(tensors, str(x_node.meta["val"].shape[0]))
    ctx.values[x_name] = "input"
    output = None
    for node in graph.nodes:
        ctx.node = node
        if node.op == "placeholder" or node.op == "get_attr" or node.name in ctx.ahead:
            continue
        if node.op == "output":
            outs = node.args[0]
            if len(outs) != 1:
                ctx.fail(f"{len(outs)} outputs", "return one tensor")
            output = ctx.value(outs[0])
            continue
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)) and val:     # max-pool with indices, ...: the
            val = val[0]                                # first item is the result
        is_tensor = isinstance(val, torch.Tensor)
        if node.target is not operator.getitem and not is_tensor:
            continue  # symbolic sizes (x.size(0)) and runtime asserts: shapes only
        if is_tensor and _fold(ctx, node):
            continue  # an operation on constants alone (self.weight[:, None, None])
        name = _op_name(node.target)
        rule = RULES.get(name) or registry.torch_rule(name)
        if is_tensor and (val.ndim == 0 or str(val.shape[0]) != ctx.batch) and \
                not (val.ndim > 1 and getattr(rule, "moves_batch", False)):
            ctx.fail(f"a result of shape {tuple(val.shape)} that does not keep the batch axis "
                     "first", "keep the batch axis first and map examples independently",
                     batch_moved=True)
        if rule is None:
            ctx.fail(f"the operator {name!r}", "fwdderiv.interop.supported_operators('torch') "
                     "lists the supported ones; fwdderiv.register_layer adds one")
        args = _arguments(node)
        ctx.values[node.name] = rule(ctx, args)
        first = args.get("self", args.get("input"))
        if name.endswith("_") and hasattr(first, "name") and first.name in ctx.values:
            ctx.values[first.name] = ctx.values[node.name]  # in place: later reads see it
    if output == "input":
        raise ValueError("from_torch: the module returns its input unchanged; nothing to import")
    nodes = _prune(ctx.nodes, output)
    chain = all(inputs == (nodes[i - 1][0] if i else "input")
                for i, (_, _, inputs) in enumerate(nodes))
    if chain:
        return Sequential([layer for _, layer, _ in nodes])
    return Graph(nodes)
