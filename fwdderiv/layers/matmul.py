"""The matrix product of two activations (attention's ``q @ k^T`` and ``softmax(.) @ v``),
and the import of scaled dot-product attention as the layers it is made of."""
import math

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from ..validation import shape_str


class MatMul(Layer):
    r"""The matrix product of two inputs, :math:`y = a\,b`, with NumPy's and PyTorch's
    ``matmul`` rules over the per-example axes: the last two axes multiply as matrices,
    the axes before them are broadcast (a per-example operand of one axis is a row vector
    on the left, a column vector on the right).

    .. math:: dy = da\,b + a\,db, \qquad g_a = \Sigma(g_y b^\top),\;
              g_b = \Sigma(a^\top g_y)

    where :math:`\Sigma` sums over the axes along which that input was broadcast. The
    directions of a tangent (or the cotangents) join the rows of ``da`` and the columns
    of ``db`` so that each product is one large matrix product per example and head.
    """

    multi_input = True

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) == 2 and all(shapes):
            (sa, sb), (ka, kb) = shapes, (shapes[0][-1], shapes[1][-2:][0])
            try:
                lead = np.broadcast_shapes(sa[:-2], sb[:-2])
            except ValueError:
                lead = None
            if ka == kb and lead is not None:
                return tuple(int(d) for d in lead) + sa[-2:-1] + sb[-1:] * (len(sb) > 1)
        got = ", ".join(shape_str(("N",) + s) for s in shapes)
        raise ValueError(f"{self!r} expected two inputs (N, ..., m, k) and (N, ..., k, n) whose "
                         f"inner sizes k agree and whose leading axes broadcast, got {got}; "
                         f"transpose an operand (x.transpose(-2, -1)) so that they multiply")

    def forward(self, a, b):
        out = self.output_shape(a.shape[1:], b.shape[1:])
        sa, sb = a.shape[1:], b.shape[1:]
        rank = max(len(sa), len(sb), 2)      # example axes of the operands as matrices
        a2 = _matrix(a, 1, len(sa) == 1, False, rank)
        b2 = _matrix(b, 1, False, len(sb) == 1, rank)
        y = np.matmul(a2, b2)
        return y.reshape(y.shape[:1] + out), (a2, b2, (sa, sb, out))

    def jvp(self, cache, da, db):
        a, b, (sa, sb, out) = cache
        rank = a.ndim - 1
        da = _matrix(da, 2, len(sa) == 1, False, rank)
        db = _matrix(db, 2, False, len(sb) == 1, rank)
        dy = _rows_out(np.matmul(_rows_in(da), b), da.shape[1], a.shape[-2]) + \
            _cols_out(np.matmul(a, _cols_in(db)), db.shape[1], b.shape[-1])
        return dy.reshape(dy.shape[:2] + out)

    def vjp(self, cache, gy):
        a, b, (sa, sb, out) = cache
        g = gy.reshape(gy.shape[:2] + _product_shape(a, b))
        ga = _rows_out(np.matmul(_rows_in(g), np.swapaxes(b, -1, -2)), g.shape[1], a.shape[-2])
        gb = _cols_out(np.matmul(np.swapaxes(a, -1, -2), _cols_in(g)), g.shape[1], b.shape[-1])
        return _reduce(ga, 2, a.shape[1:]).reshape(ga.shape[:2] + sa), \
            _reduce(gb, 2, b.shape[1:]).reshape(gb.shape[:2] + sb)

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum_d \langle g_d, da_d\,b + a\,db_d\rangle`: :math:`\Sigma \sum_d
        g_d\,db_d^\top` in ``a`` and :math:`\Sigma \sum_d da_d^\top g_d` in ``b``; the sums
        over directions are the inner sums of one product each (directions joined with
        columns, then with rows)."""
        a, b, (sa, sb, out) = cache
        rank, n = a.ndim - 1, a.shape[0]
        g = gdy.reshape(gdy.shape[:2] + _product_shape(a, b))
        da = _matrix(dx[0], 2, len(sa) == 1, False, rank)
        db = _matrix(dx[1], 2, False, len(sb) == 1, rank)
        ga = np.matmul(_cols_in(g), np.swapaxes(_cols_in(db), -1, -2))
        gb = np.matmul(np.swapaxes(_rows_in(da), -1, -2), _rows_in(g))
        ga, gb = (np.broadcast_to(t, (n,) + t.shape[1:]) for t in (ga, gb))
        return (_reduce(ga, 1, a.shape[1:]).reshape((n,) + sa),
                _reduce(gb, 1, b.shape[1:]).reshape((n,) + sb)), {}


def _product_shape(a, b):
    """The per-example shape of ``a @ b`` for operands as :func:`_matrix` makes them."""
    lead = np.broadcast_shapes(a.shape[1:-2], b.shape[1:-2])
    return tuple(int(d) for d in lead) + (a.shape[-2], b.shape[-1])


def _matrix(v, lead, row, col, rank):
    """``v`` (``lead`` leading axes) as ``matmul`` sees its operand: one of one axis as a
    row vector ``(1, k)`` on the left or a column ``(k, 1)`` on the right; then axes of one
    after the leading axes, up to ``rank`` example axes, so that the batch and direction
    axes of the two operands meet."""
    if row:
        v = v[..., None, :]
    elif col:
        v = v[..., None]
    return v.reshape(v.shape[:lead] + (1,) * (rank - (v.ndim - lead)) + v.shape[lead:])


def _rows_in(t):
    """``(N, D, *B, m, k)`` -> ``(N, *B, D*m, k)``: the directions join the rows."""
    t = np.moveaxis(t, 1, -3)
    return t.reshape(t.shape[:-3] + (-1, t.shape[-1]))


def _rows_out(t, d, m):
    """``(N, *B, D*m, n)`` -> ``(N, D, *B, m, n)``, the inverse of :func:`_rows_in`."""
    t = t.reshape(t.shape[:-2] + (d, m, t.shape[-1]))
    return np.moveaxis(t, -3, 1)


def _cols_in(t):
    """``(N, D, *B, k, n)`` -> ``(N, *B, k, D*n)``: the directions join the columns."""
    t = np.moveaxis(t, 1, -2)
    return t.reshape(t.shape[:-2] + (-1,))


def _cols_out(t, d, n):
    """``(N, *B, m, D*n)`` -> ``(N, D, *B, m, n)``, the inverse of :func:`_cols_in`."""
    t = t.reshape(t.shape[:-1] + (d, n))
    return np.moveaxis(t, -2, 1)


def _reduce(g, lead, shape):
    """``g`` summed over the axes along which an operand of example shape ``shape`` (as
    :func:`_matrix` makes it: of ``g``'s rank) was broadcast."""
    axes = tuple(lead + i for i, (n, m) in enumerate(zip(shape, g.shape[lead:])) if n == 1 != m)
    return g.sum(axis=axes, keepdims=True) if axes else g


# -- registry entry: imports -------------------------------------------------------------------
def _same_rank(ctx, x, y, what):
    """Refuse a product of two values whose batch axes would not meet (PyTorch and ONNX
    align the axes of ``matmul`` from the right)."""
    nx, ny = len(ctx.shape(x)), len(ctx.shape(y))
    if nx != ny or nx < 2:
        ctx.fail(f"{what} of values of per-example shapes {ctx.shape(x)} and {ctx.shape(y)} "
                 f"(the batch axis of one would multiply another axis of the other)",
                 fix="give both operands the same number of axes, two or more per example")


def _constant_operand(ctx, c, rank, side):
    """A constant operand of a product with a value of ``rank`` axes per example, as a
    per-example array: it may not reach the value's batch axis (a leading axis of one is
    dropped)."""
    c = np.asarray(c)
    if c.ndim == rank + 1 and c.shape[0] == 1:
        c = c[0]
    if not 1 <= c.ndim <= rank:
        ctx.fail(f"a constant {side} operand of shape {c.shape} in a product with a value of "
                 f"{rank} axes per example", fix="use a constant that does not reach the "
                 "batch axis")
    return c


def _product(ctx, x, y, constant):
    """Emit ``x @ y`` for two values, or a value and a constant (``constant(name)``: the
    array, or None for a value); a 2-d constant on the right is a Linear layer's weight.
    For PyTorch's rules and ONNX's alike; returns the value's name."""
    cx, cy = constant(x), constant(y)
    if cx is None and cy is None:
        _same_rank(ctx, x, y, "a product")
        return ctx.emit(ctx.layer("MatMul"), [x, y])
    if cx is not None and cy is not None:
        ctx.fail("a product of two constants", fix="fold constants before importing")
    if cy is not None and np.ndim(cy) == 2:
        layer = ctx.layer("Linear", in_features=cy.shape[0], out_features=cy.shape[1],
                          bias=False)
        layer.weight = np.ascontiguousarray(np.asarray(cy).T)
        return ctx.emit(layer, x)
    v, c, side = (y, cx, "left") if cx is not None else (x, cy, "right")
    c = _constant_operand(ctx, c, len(ctx.shape(v)), side)
    const = exchange.emit_constant(ctx, v, c)
    return ctx.emit(ctx.layer("MatMul"), [const, v] if side == "left" else [v, const])


def _matmul_from_torch(ctx, a):
    """``matmul``, ``bmm``, ``mm``."""
    return _product(ctx, a["self"], a["other"] if "other" in a else a["mat2"], ctx.constant)


def _matmul_from_onnx(imp, node, a):
    x, y = node.input[0], node.input[1]
    out = _product(imp, x, y, lambda n: None if n in imp.values else imp.const(n))
    exchange.onnx_output(imp, node, out)


def linear_of_values(ctx, a):
    """``F.linear(x, w, b)`` whose weight ``w`` is computed from the input: ``x @ w^T``,
    plus the constant ``b``."""
    x, w, b = a["input"], a["weight"], a.get("bias")
    _same_rank(ctx, x, w, "a linear map")
    nd = len(ctx.shape(w)) + 1
    wt = ctx.emit(ctx.layer("Permute", dims=list(range(nd - 2)) + [nd - 1, nd - 2]), w)
    y = ctx.emit(ctx.layer("MatMul"), [x, wt])
    if b is None:
        return y
    bias = ctx.constant(b)
    if bias is None:
        ctx.fail("a bias computed from the input in a linear map", fix="use a constant bias")
    full = np.broadcast_to(bias, ctx.out_shape()).copy()
    return ctx.emit(ctx.layer("Add"), [y, exchange.emit_constant(ctx, y, full)])


def _attention_mask(ctx, a, L, S):
    """The additive mask of scaled dot-product attention, (..., L, S), or None: a float
    mask as it is, a boolean one as 0 where True and -inf where False, ``is_causal`` as
    the lower triangle."""
    masks = []
    if a.get("is_causal"):
        masks.append(np.where(np.tril(np.ones((L, S), bool)), 0.0, -np.inf))
    if a.get("attn_mask") is not None:
        m = ctx.constant(a["attn_mask"])
        if m is None:
            ctx.fail("an attention mask computed from the input", fix="use a constant mask")
        masks.append(np.where(m, 0.0, -np.inf) if m.dtype == bool else m)
    return None if not masks else masks[0] if len(masks) == 1 else masks[0] + masks[1]


def _sdpa_from_torch(ctx, a):
    """``F.scaled_dot_product_attention``: ``softmax(q k^T * scale + mask) v``, as the
    layers MatMul, Permute, Scale, Add of a Constant and Softmax."""
    q, k, v = a["query"], a["key"], a["value"]
    if float(a.get("dropout_p") or 0.0) != 0.0:
        ctx.fail(f"dropout_p={a['dropout_p']}", fix="use dropout_p=0 (inference)")
    if a.get("enable_gqa") and ctx.shape(q)[:-2] != ctx.shape(k)[:-2]:
        ctx.fail("grouped-query attention (enable_gqa=True)", fix="repeat the keys' heads")
    _same_rank(ctx, q, k, "attention")
    _same_rank(ctx, q, v, "attention")
    nd = len(ctx.shape(k)) + 1
    kt = ctx.emit(ctx.layer("Permute", dims=list(range(nd - 2)) + [nd - 1, nd - 2]), k)
    s = ctx.emit(ctx.layer("MatMul"), [q, kt])
    E, L, S = ctx.shape(q)[-1], ctx.shape(q)[-2], ctx.shape(k)[-2]
    scale = a.get("scale")
    s = ctx.emit(ctx.layer("Scale", factor=1 / math.sqrt(E) if scale is None else scale), s)
    mask = _attention_mask(ctx, a, L, S)
    if mask is not None:
        shape = ctx.layer("MatMul").output_shape(ctx.shape(q), ctx.shape(k)[:-2] + (E, S))
        full = np.broadcast_to(exchange.per_example(ctx, mask, shape), shape).copy()
        s = ctx.emit(ctx.layer("Add"), [s, exchange.emit_constant(ctx, q, full)])
    return ctx.emit(ctx.layer("MatMul"), [ctx.emit(ctx.layer("Softmax"), s), v])


def _matmul_to_torch(layer):
    def fn(a, b):
        # matmul of the examples: a vector operand becomes a matrix, then the operand of
        # fewer axes gets axes of one after its batch axis, so that the batch axes meet
        va, vb = a.ndim == 2, b.ndim == 2
        a, b = a.unsqueeze(-2) if va else a, b.unsqueeze(-1) if vb else b
        r = max(a.ndim, b.ndim)
        a, b = (t.reshape(t.shape[:1] + (1,) * (r - t.ndim) + t.shape[1:]) for t in (a, b))
        y = a @ b
        y = y[..., 0] if vb else y
        return y[..., 0, :] if va else y
    return exchange.torch_function_module(fn, "MatMul")


register_layer(MatMul, schema=schema.LayerSchema({}),
               torch={"matmul": _matmul_from_torch, "bmm": _matmul_from_torch,
                      "mm": _matmul_from_torch,
                      "scaled_dot_product_attention": _sdpa_from_torch},
               onnx={"MatMul": _matmul_from_onnx}, to_torch=_matmul_to_torch,
               example=Example({}, (2, 3, 3), inputs=2))
