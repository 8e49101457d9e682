"""Jacobian regularisation (Hoffman, Roberts and Yaida, 2019): Frobenius-norm estimates of
the input Jacobian and the exact parameter gradients of the penalty built from them."""
from fwdderiv.regularization.jacobian import METHODS, jacobian_norm, jacobian_penalty

__all__ = ["jacobian_norm", "jacobian_penalty", "METHODS"]
