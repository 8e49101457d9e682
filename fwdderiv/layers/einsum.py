"""Einstein summation over per-example operands: attention written with ``torch.einsum``
(``'b h i d, b h j d -> b h i j'``), relative position logits, talking heads."""
import string

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from ..validation import shape_str


class Einsum(Layer):
    r"""``torch.einsum(equation, *operands)`` of one or two operands, each with the batch
    axis first: the first letter of every operand and of the output is the batch letter,
    which appears nowhere else (``'bhid,bhjd->bhij'``). A constant operand is the output of
    a :class:`Constant` layer (the import rules make one). As in PyTorch, a letter may
    repeat within an operand (its diagonal), a letter the output lacks is summed, and an
    axis of size 1 broadcasts against the same letter's size elsewhere.

    With two operands the map is bilinear:

    .. math:: y = E(a, b), \qquad dy = E(da, b) + E(a, db), \qquad
              g_a = E^{\top}_a(g_y, b),\; g_b = E^{\top}_b(a, g_y)

    where :math:`E^{\top}_a` is the einsum from the output's and ``b``'s subscripts back to
    ``a``'s (a letter only ``a`` has is broadcast, a broadcast axis summed, a repeated letter
    written to the diagonal). The direction axis of a tangent (or cotangent) is one more
    letter after the batch letter. One operand: linear, :math:`dy = E(dx)`. Two operands go
    to BLAS as one batched matrix product.

    Parameters
    ----------
    equation : str
        Explicit (``->``), letters only (spaces are ignored); the import rules expand
        ``...`` and the implicit form.
    """

    def __init__(self, equation):
        if not isinstance(equation, str):
            raise TypeError(f"Einsum: equation must be a str such as 'bij,bjk->bik', got "
                            f"{equation!r}")
        self.inputs, self.output = _parse(equation)
        self.equation = ",".join(self.inputs) + "->" + self.output
        self.multi_input = len(self.inputs) == 2
        self.linear = len(self.inputs) == 1
        self.dir = next(c for c in string.ascii_letters if c not in self.equation)

    def get_config(self):
        return {"equation": self.equation}

    def output_shape(self, *in_shapes):
        shapes = [("N",) + tuple(s) for s in in_shapes]
        if len(shapes) != len(self.inputs) or \
                any(len(s) != len(sub) for s, sub in zip(shapes, self.inputs)):
            raise ValueError(
                f"{self!r} expected {len(self.inputs)} input(s) with "
                f"{', '.join(str(len(s)) for s in self.inputs)} axes (batch included), got "
                f"{', '.join(shape_str(s) for s in shapes)}; write the equation for these "
                f"operands")
        sizes = _letter_sizes(self.inputs, shapes, self)
        return tuple(sizes[c] for c in self.output[1:])

    def forward(self, *xs):
        self.output_shape(*(x.shape[1:] for x in xs))
        y = _einsum(self.inputs, xs, self.output)
        return y, (xs if self.multi_input else xs[0].shape[1:])

    def _lead(self, sub):
        """The subscripts of a tangent (or cotangent): the direction letter second."""
        return sub[0] + self.dir + sub[1:]

    def jvp(self, cache, *dxs):
        t_out = self._lead(self.output)
        if self.linear:
            return _einsum([self._lead(self.inputs[0])], dxs, t_out)
        (a, b), (sa, sb) = cache, self.inputs
        terms = [_einsum(s, v, t_out) for s, v, dv in (
            ([self._lead(sa), sb], (dxs[0], b), dxs[0]),
            ([sa, self._lead(sb)], (a, dxs[1]), dxs[1])) if dv.any()]   # not a Constant's
        if not terms:
            shape = self.output_shape(a.shape[1:], b.shape[1:])
            return np.zeros((a.shape[0], dxs[0].shape[1]) + shape, dxs[0].dtype)
        return terms[0] + terms[1] if len(terms) == 2 else terms[0]

    def vjp(self, cache, gy):
        t_out, lead = self._lead(self.output), gy.shape[:2]
        if self.linear:
            return _adjoint([t_out], [gy], self._lead(self.inputs[0]), lead + tuple(cache))
        (a, b), (sa, sb) = cache, self.inputs
        return (_adjoint([t_out, sb], [gy, b], self._lead(sa), lead + a.shape[1:]),
                _adjoint([t_out, sa], [gy, a], self._lead(sb), lead + b.shape[1:]))

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum_d \langle g_d, E(da_d, b) + E(a, db_d)\rangle`:
        :math:`E^{\top}_a(g, db)` in ``a`` and :math:`E^{\top}_b(da, g)` in ``b``, the
        direction letter summed by the einsum."""
        if self.linear:
            return None, {}
        (a, b), (sa, sb), t_out = cache, self.inputs, self._lead(self.output)
        da, db = dx
        ga = _adjoint([t_out, self._lead(sb)], [gdy, db], sa, a.shape) if db.any() else \
            np.zeros_like(a)
        gb = _adjoint([t_out, self._lead(sa)], [gdy, da], sb, b.shape) if da.any() else \
            np.zeros_like(b)
        return (ga, gb), {}


def _parse(equation):
    """``'b h i d, b h j d -> b h i j'`` -> (['bhid', 'bhjd'], 'bhij'); a ValueError
    unless it is an explicit equation of one or two operands that keeps the batch letter
    first everywhere."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    owner = f"Einsum({equation!r})"
    if not arrow or not all(s.isalpha() and s.isascii() for s in ins + [out]) or \
            not 1 <= len(ins) <= 2:
        raise ValueError(f"{owner}: expected an explicit equation of one or two operands in "
                         f"letters, such as 'bij,bjk->bik'; write it with '->' and without "
                         f"'...', or split an einsum of more operands into pairs")
    if len(set(out)) != len(out) or any(c not in "".join(ins) for c in out):
        raise ValueError(f"{owner}: every letter of the output must appear once, and in an "
                         f"operand; got the output {out!r}")
    batch = out[0]
    if any(s[0] != batch or s.count(batch) != 1 for s in ins):
        raise ValueError(
            f"{owner}: every operand and the output must begin with the batch letter "
            f"{batch!r}, which appears nowhere else (the batch axis first: each example is "
            f"mapped on its own); move the batch axis to the front of every operand")
    return ins, out


def _letter_sizes(subs, shapes, owner):
    """Letter -> size over operands of ``shapes``; a size 1 broadcasts against another."""
    sizes = {}
    for sub, shape in zip(subs, shapes):
        for c, n in zip(sub, shape):
            m = sizes.get(c, n)
            if m != n and 1 not in (m, n) and "N" not in (m, n):
                raise ValueError(
                    f"{owner!r}: letter {c!r} has sizes {m} and {n} in operands of shapes "
                    f"{', '.join(shape_str(s) for s in shapes)}; the sizes of one letter "
                    f"must agree (or one be 1)")
            sizes[c] = n if m in (1, "N") else m
    return sizes


def _einsum(subs, arrays, out):
    """The einsum of one or two arrays (subscripts ``subs``) to subscripts ``out``; axes of
    size 1 broadcast. Two arrays: one batched matrix product (:func:`_pair`)."""
    sizes = _letter_sizes(subs, [a.shape for a in arrays], "Einsum")
    arrays = [np.broadcast_to(a, [sizes[c] for c in s]) for s, a in zip(subs, arrays)]
    if len(arrays) == 1:
        return np.ascontiguousarray(np.einsum(f"{subs[0]}->{out}", arrays[0]))
    return _pair(subs[0], arrays[0], subs[1], arrays[1], out)


def _alone(sub, a, keep):
    """``a`` (subscripts ``sub``) with its repeated letters taken on the diagonal and the
    letters outside ``keep`` summed: the new subscripts and array."""
    kept = "".join(c for c in dict.fromkeys(sub) if c in keep)
    return (sub, a) if kept == sub else (kept, np.einsum(f"{sub}->{kept}", a))


def _pair(sa, a, sb, b, out):
    """The einsum of two arrays of agreeing sizes as ``matmul`` of (batch, left, inner) by
    (batch, inner, right): letters in both operands and the output are the batch, in both
    and not the output the inner (summed) axes."""
    sa, a = _alone(sa, a, sb + out)
    sb, b = _alone(sb, b, sa + out)
    size = dict(zip(sa + sb, a.shape + b.shape))
    batch = [c for c in sa if c in sb and c in out]
    inner = [c for c in sa if c in sb and c not in out]
    left = [c for c in sa if c not in sb]
    right = [c for c in sb if c not in sa]

    def n(letters):
        return int(np.prod([size[c] for c in letters], dtype=np.int64))
    A = a.transpose([sa.index(c) for c in batch + left + inner]).reshape(
        n(batch), n(left), n(inner))
    B = b.transpose([sb.index(c) for c in batch + inner + right]).reshape(
        n(batch), n(inner), n(right))
    y = np.matmul(A, B).reshape([size[c] for c in batch + left + right])
    order = batch + left + right
    return np.ascontiguousarray(y.transpose([order.index(c) for c in out]))


def _adjoint(subs, arrays, target, shape):
    """The einsum of ``arrays`` onto the subscripts ``target`` of an operand of ``shape``:
    its letters the arrays lack are broadcast, axes of the operand of size 1 that met a
    larger size are summed, and a repeated letter writes the diagonal (zeros elsewhere)."""
    have = "".join(subs)
    uniq = "".join(dict.fromkeys(target))
    avail = "".join(c for c in uniq if c in have)
    g = _einsum(subs, arrays, avail)
    g = g.reshape([g.shape[avail.index(c)] if c in have else 1 for c in uniq])
    own = [shape[target.index(c)] for c in uniq]
    summed = tuple(i for i, (m, k) in enumerate(zip(g.shape, own)) if k == 1 != m)
    if summed:
        g = g.sum(axis=summed, keepdims=True)
    g = np.broadcast_to(g, own)
    if uniq == target:
        return np.ascontiguousarray(g)
    out = np.zeros(shape, g.dtype)
    np.einsum(f"{target}->{uniq}", out)[...] = g        # a writeable view of the diagonal
    return out


# -- registry entry: imports ---------------------------------------------------------------
def explicit(equation, ranks, fail):
    """``equation`` (spaces, ``...``, the implicit form) for operands of ``ranks`` axes as
    explicit subscripts in letters: (list of operand subscripts, output subscripts).
    ``fail(what)`` where it does not fit the ranks."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ranks):
        fail(f"an equation {equation!r} for {len(ranks)} operand(s)")
    spare = (c for c in string.ascii_letters if c not in eq)
    width = max([r - len(s) + 3 for s, r in zip(ins, ranks) if "..." in s] + [0])
    ell = "".join(next(spare) for _ in range(width))
    ins = [s.replace("...", ell[width - (r - len(s) + 3):]) for s, r in zip(ins, ranks)]
    if not arrow:                   # implicit: the ellipsis, then letters seen once, sorted
        once = sorted(c for c in set(lhs) if c.isalpha() and lhs.count(c) == 1)
        rhs = ell + "".join(once)
    out = rhs.replace("...", ell)
    if any(len(s) != r for s, r in zip(ins, ranks)):
        fail(f"an equation {equation!r} for operands of {', '.join(map(str, ranks))} axes")
    return ins, out


def emit_einsum(ctx, equation, operands, constant):
    """Emit the Einsum of ``operands`` (values, or constants: ``constant(name)`` gives the
    array, None for a value); a constant becomes a Constant layer fed by a value, with the
    batch letter added (a leading axis of size 1 under the batch letter is dropped). For
    PyTorch's rules and ONNX's alike; returns the value's name."""
    consts = [constant(v) for v in operands]
    values = [v for v, c in zip(operands, consts) if c is None]
    if not values:
        ctx.fail("an einsum of constants", fix="fold constants before importing")
    if len(operands) > 2:
        ctx.fail(f"an einsum of {len(operands)} operands",
                 fix="write it as einsums of two operands each")
    ranks = [np.ndim(c) if c is not None else len(ctx.shape(v)) + 1
             for v, c in zip(operands, consts)]
    ins, out = explicit(equation, ranks, lambda what: ctx.fail(what, fix="check the equation"))
    batch, inputs = out[:1], []
    for i, (v, c) in enumerate(zip(operands, consts)):
        if c is None:
            inputs.append(v)
            continue
        if batch and ins[i][:1] == batch:
            if np.shape(c)[0] != 1:
                ctx.fail(f"a constant operand of shape {np.shape(c)} along the batch letter "
                         f"{batch!r}", fix="give constants one entry along the batch axis")
            c, ins[i] = np.asarray(c)[0], ins[i][1:]
        inputs.append(exchange.emit_constant(ctx, values[0], np.asarray(c)))
        ins[i] = batch + ins[i]
    layer = ctx.layer("Einsum", equation=",".join(ins) + "->" + out)
    return ctx.emit(layer, inputs)


def _from_torch(ctx, a):
    return emit_einsum(ctx, a["equation"], list(a["tensors"]), ctx.constant)


def _from_onnx(imp, node, a):
    eq = a["equation"].decode() if isinstance(a["equation"], bytes) else a["equation"]
    out = emit_einsum(imp, eq, list(node.input),
                      lambda n: None if n in imp.values else imp.const(n))
    exchange.onnx_output(imp, node, out)


def _equation(v, field):
    try:
        return Einsum(v).equation
    except (TypeError, ValueError) as err:
        raise schema.SchemaError(f"field {field!r}: {err}") from None


def _to_torch(layer):
    import torch
    return exchange.torch_function_module(lambda *xs: torch.einsum(layer.equation, *xs),
                                          "Einsum")


register_layer(Einsum, schema=schema.LayerSchema({"equation": (_equation, schema.REQUIRED)}),
               torch={"einsum": _from_torch}, onnx={"Einsum": _from_onnx},
               to_torch=_to_torch,
               example=Example({"equation": "bijk,bikl->bjl"}, (2, 3, 3), inputs=2))
