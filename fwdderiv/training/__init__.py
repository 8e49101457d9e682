"""Training classifiers with NumPy: softmax cross-entropy, SGD/Adam, evaluation, checkpoints.

Parameter gradients come from each layer's ``param_vjp`` (through
``Sequential.forward_cached`` and ``Sequential.backward``), so a network trained here is
the same object whose forward derivative the rest of the package computes.
"""
from fwdderiv.training.checkpoint import load_checkpoint, save_checkpoint
from fwdderiv.training.loop import (EVAL_BATCH_SIZE, History, evaluate, fit, logits_part,
                                    loss_and_grads, predict)
from fwdderiv.training.loss import log_softmax, softmax_cross_entropy
from fwdderiv.training.optim import ADAM_EPS, SGD, Adam, make_optimizer

__all__ = [
    "fit", "evaluate", "predict", "loss_and_grads", "History", "logits_part",
    "softmax_cross_entropy", "log_softmax", "SGD", "Adam", "make_optimizer",
    "save_checkpoint", "load_checkpoint", "EVAL_BATCH_SIZE", "ADAM_EPS",
]
