"""A PyTorch model through fwdderiv's two import routes, and PyTorch's own Jacobian of it:
what the operator and architecture tests compare."""
import torch

import fwdderiv as fd


def imported(model, x, route, tmp_path, opset=17):
    """``model`` imported by ``from_torch`` (route ``"torch"``), or exported by
    ``torch.onnx`` (the batch axis dynamic) and imported by ``from_onnx`` (``"onnx"``)."""
    if route == "torch":
        return fd.from_torch(model, torch.from_numpy(x))
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, opset_version=opset, dynamo=False)
    return fd.from_onnx(path)


def torch_jacobian(model, x, mode="reverse"):
    """``vmap(jacrev(f))`` (or ``jacfwd``) of ``f(v) = model(v[None])[0]`` at the batch
    ``x``; one example at a time where PyTorch cannot vmap it (``nn.PReLU``'s weight
    broadcast fails under vmap in torch 2.13)."""
    jac = torch.func.jacrev if mode == "reverse" else torch.func.jacfwd
    f = lambda v: model(v[None])[0]  # noqa: E731
    xt = torch.from_numpy(x)
    try:
        J = torch.vmap(jac(f))(xt)
    except RuntimeError:
        J = torch.stack([jac(f)(xi) for xi in xt])
    return J.detach().numpy()


def torch_jacobians(model, x):
    """PyTorch's reverse and forward Jacobians of ``model`` at ``x``."""
    return torch_jacobian(model, x, "reverse"), torch_jacobian(model, x, "forward")


def torch_exact_penalty(model, x, input_grad=False):
    """PyTorch's exact Jacobian penalty ``0.5 * mean_n ||dZ/dx_n||_F^2`` of ``model`` at
    ``x`` by double backward (``grad(create_graph=True)``, then ``backward``): its value,
    with the parameters' gradients left in their ``.grad``; with ``input_grad``, also its
    gradient in the input, summed over the batch."""
    xt = torch.from_numpy(x).requires_grad_(True)
    z = model(xt)
    sq = sum(torch.autograd.grad(z[:, c].sum(), xt, create_graph=True)[0].pow(2).sum()
             for c in range(z.shape[1]))
    value = 0.5 * sq / x.shape[0]
    gx = torch.autograd.grad(value, xt, retain_graph=True)[0] if input_grad else None
    value.backward()
    if input_grad:
        return value.item(), gx.sum(axis=0).numpy()
    return value.item()
