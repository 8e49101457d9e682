"""The training loop: seeded minibatch SGD/Adam on softmax cross-entropy, and evaluation."""
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from fwdderiv.core.layer import train_mode  # noqa: F401  (fwdderiv.training.loop.train_mode)
from fwdderiv.threads import blas_threads
from fwdderiv.training.checkpoint import save_checkpoint
from fwdderiv.training.loss import softmax_cross_entropy
from fwdderiv.training.optim import make_optimizer
from fwdderiv.training.progress import make_bar, progress_enabled
from fwdderiv.validation import check_finite, check_int, check_real

#: Examples per forward pass in :func:`evaluate` and :func:`predict`; bounds the memory
#: of the intermediate activations (about 60 MB for LeNet-5 in float32).
EVAL_BATCH_SIZE = 1000


@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch.

    Attributes
    ----------
    loss, accuracy : list of float
        Mean training loss and training accuracy over the epoch's minibatches (with the
        weights as they were when each minibatch was seen).
    val_loss, val_accuracy : list of float
        On ``(x_val, y_val)`` after the epoch; empty when no validation set was given.
    lr : list of float
        Learning rate used in the epoch.
    seconds : list of float
        Wall-clock seconds of the epoch's training steps (validation excluded).
    """

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    #: Mean Jacobian penalty 1/2 ||dZ/dx||_F^2 (as estimated) over the epoch's minibatches;
    #: empty unless ``fit(..., jacobian_reg=...)``.
    jacobian: list = field(default_factory=list)


def logits_part(net):
    """The part of ``net`` that outputs logits: ``net[:-1]`` if it ends in (Log)Softmax."""
    from fwdderiv.logits import split_final_softmax

    return split_final_softmax(net)[0]


def _check_data(where, net, x, y):
    """Validate one (x, y) pair against ``net``; return the number of classes."""
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(
            f"{where} expected x as a float32 or float64 ndarray, got {got}; convert "
            "images with x.astype(np.float32) / 255")
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"{where} expected y as a 1-D array of integer class labels, got dtype "
            f"{y.dtype} and shape {y.shape}; use y.astype(np.int64) (one label per example)")
    if x.ndim < 2 or len(x) != len(y):
        raise ValueError(
            f"{where} expected x of shape (N, *S) and y of shape (N,) with the same N, got "
            f"x {x.shape} and y {y.shape}")
    check_finite(x, where, what="training images" if where == "fit" else "images")
    out_shape = tuple(net.output_shape(tuple(x.shape[1:])))
    if len(out_shape) != 1:
        raise ValueError(
            f"{where} expected a classifier whose output per example is a vector (C,), got "
            f"{out_shape}; end the network with fd.Flatten() and fd.Linear(..., n_classes)")
    n_classes = out_shape[0]
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{where} expected labels in [0, {n_classes}) for a network with {n_classes} "
            f"outputs, got labels from {y.min()} to {y.max()}; relabel the data or give "
            "the last Linear layer more outputs")
    return n_classes


def _param_arrays(net):
    """Live parameter arrays of ``net`` in a fixed order, with their (layer, name) keys."""
    keys, arrays = [], []
    for i, params in enumerate(net.params):
        for name in sorted(params):
            keys.append((i, name))
            arrays.append(params[name])
    return keys, arrays


def _split(net):
    """``(body, prefix, first)``: the logits part of ``net`` from its first layer with
    parameters on, and the parameter-free layers before it (None if there are none).

    Leading parameter-free layers (e.g. Pad2d) are plain preprocessing: they need no
    caches, and the first trainable layer needs no input cotangent.
    """
    body = logits_part(net)
    first = next((i for i, p in enumerate(body.params) if p), len(body))
    return body[first:], (body[:first] if first else None), first


def _step_grads(body, prefix, x, y):
    if prefix is not None:
        x = prefix(x)
    z, caches = body.forward_cached(x)
    loss, g_z = softmax_cross_entropy(z, y)
    _, grads = body.backward(caches, g_z, input_grad=False)
    return loss, z, grads


def loss_and_grads(net, x, y):
    """Mean softmax cross-entropy of ``net`` on ``(x, y)`` and its parameter gradients.

    The loss is taken on the logits (``net[:-1]`` when ``net`` ends in Softmax or
    LogSoftmax); gradients come from each layer's ``param_vjp`` through
    ``Sequential.forward_cached`` and ``Sequential.backward``.

    Parameters
    ----------
    net : Sequential
    x : ndarray of shape (N, *S)
    y : ndarray of shape (N,), int

    Returns
    -------
    loss : float
    grads : list of dict
        One dict per layer of ``net`` (empty for layers without parameters), keyed
        like ``layer.params``.
    """
    _check_data("loss_and_grads", net, x, y)
    body, prefix, first = _split(net)
    loss, _, body_grads = _step_grads(body, prefix, x, np.asarray(y))
    grads = [{} for _ in range(len(net))]
    grads[first:first + len(body_grads)] = body_grads
    return loss, grads


def predict(net, x, batch_size=EVAL_BATCH_SIZE):
    """``net(x)`` computed ``batch_size`` examples at a time.

    Parameters
    ----------
    net : Sequential
    x : ndarray of shape (N, *S)

    Returns
    -------
    ndarray of shape (N, *S_out)
    """
    if len(x) == 0:
        raise ValueError("predict expected at least one example, got an empty x")
    return np.concatenate([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(net, x, y, batch_size=EVAL_BATCH_SIZE):
    """Classification accuracy of ``net`` on ``(x, y)``, in batches to bound memory.

    Parameters
    ----------
    net : Sequential
        A classifier; its output per example is a vector of C scores (probabilities or
        logits: the arg-max is the same).
    x : ndarray of shape (N, *S), float
    y : ndarray of shape (N,), int
    batch_size : int, default EVAL_BATCH_SIZE

    Returns
    -------
    float
        Fraction of examples whose arg-max output equals the label.

    Examples
    --------
    >>> acc = evaluate(net, ds.x_test, ds.y_test)   # doctest: +SKIP
    """
    _check_data("evaluate", net, x, y)
    y = np.asarray(y)
    if len(x) == 0:
        raise ValueError("evaluate expected at least one example, got an empty x")
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((net(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def _val_metrics(body, x, y, batch_size=EVAL_BATCH_SIZE):
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        z = body(x[i:i + batch_size])
        loss, _ = softmax_cross_entropy(z, y[i:i + batch_size])
        loss_sum += loss * len(z)
        correct += int((z.argmax(axis=1) == y[i:i + batch_size]).sum())
    return loss_sum / len(x), correct / len(x)


@contextlib.contextmanager
def limited_threads(n):
    """Run the body with Numba's threads (and BLAS's, if threadpoolctl is installed) at ``n``.

    ``None`` changes nothing. Numba's setting is per calling thread and restored on exit.
    Minibatches of a few dozen images are too small for threads to pay off, and when other
    processes share the cores, spinning OpenMP and BLAS worker threads slow training down
    many times over (docs/pages/training.md); ``n=1`` avoids that.
    """
    if n is None:
        yield
        return
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_threads must be None or an integer >= 1, got {n!r}")
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    try:
        with blas_threads(n):
            yield
    finally:
        numba.set_num_threads(before)


def _check_jacobian(reg, method, n_proj):
    from fwdderiv.regularization import METHODS

    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.floating, np.integer)) \
            or not np.isfinite(reg) or reg < 0:
        raise ValueError(f"fit expected jacobian_reg (lambda) as a finite number >= 0, got "
                         f"{reg!r}; 0 turns Jacobian regularisation off")
    if method not in METHODS:
        raise ValueError(f"fit expected jacobian_method in {', '.join(map(repr, METHODS))}, "
                         f"got {method!r}")
    if isinstance(n_proj, bool) or not isinstance(n_proj, (int, np.integer)) or n_proj < 1:
        raise ValueError(f"fit expected jacobian_proj as an integer >= 1, got {n_proj!r}")


def _jacobian_step(net, x, method, n_proj, rng):
    """The Jacobian penalty of the logits w.r.t. the raw input and its parameter gradients
    (one dict per layer of ``net``), through the batch statistics of any BatchNorm."""
    from fwdderiv.regularization import jacobian_penalty
    from fwdderiv.regularization.batch_stats import add_statistics_path, frozen_batch_statistics

    with frozen_batch_statistics(net, x):
        value, grads = jacobian_penalty(net, x, method=method, n_proj=n_proj, seed=rng,
                                        on="logits")
        return value, add_statistics_path(net, x, grads)


def _penalised_step(net, x, y, lam, method, n_proj, rng):
    """One training step's ``(loss, logits, penalty, grads)`` for cross-entropy + ``lam``
    times the Jacobian penalty, ``grads`` one dict per node of ``net``.

    The same gradient as :func:`_step_grads` plus ``lam`` times :func:`_jacobian_step`,
    from one primal pass: the training form's forward gives the logits, the batch
    statistics and (BatchNorm caches read in inference form) the linearization of the
    penalty; and one reverse pass of the training form pulls back the cross-entropy's
    output cotangent together with the penalty's cotangents on the statistics
    (:func:`fwdderiv.regularization.batch_stats.statistics_cotangents`)."""
    from fwdderiv.core.second_order import Linearization
    from fwdderiv.regularization.batch_stats import (frozen_batch_statistics,
                                                     inference_caches,
                                                     statistics_cotangents,
                                                     training_backward, training_forward)
    from fwdderiv.regularization.jacobian import penalty_at

    body = logits_part(net)
    z, caches, values = training_forward(body, x)
    with frozen_batch_statistics(body, x, activations=values):
        lin = Linearization.from_pass(body, values, inference_caches(body, caches))
        value, jgrads = penalty_at(body, lin, method, n_proj, rng, z.shape[1])
        inject = statistics_cotangents(body, jgrads, scale=lam)
    loss, g_z = softmax_cross_entropy(z, y)
    grads = training_backward(body, caches, g_z, inject)
    grads += [{} for _ in range(len(net.layers) - len(grads))]
    jgrads += [{} for _ in range(len(net.layers) - len(jgrads))]
    total = [{name: g.get(name, 0) + lam * jg[name] for name in jg}
             for g, jg in zip(grads, jgrads)]
    return loss, z, value, total


def _check_hyper(epochs, batch_size, lr_decay, lr, momentum, weight_decay):
    check_int(epochs, "epochs", "fit", minimum=1)
    check_int(batch_size, "batch_size", "fit", minimum=1)
    check_real(lr_decay, "lr_decay", "fit", 0, 1, lo_open=True)
    check_real(lr, "lr (the learning rate)", "fit", 0, lo_open=True, hint="e.g. lr=0.05")
    check_real(momentum, "momentum", "fit", 0, 1, hi_open=True)
    check_real(weight_decay, "weight_decay", "fit", 0)


def _check_fit_data(net, x, y, x_val, y_val):
    """Validate the training and validation data of :func:`fit`; return ``(y, y_val)``
    as arrays (``y_val`` stays None when no validation set is given)."""
    _check_data("fit", net, x, y)
    y = np.asarray(y)
    if (x_val is None) != (y_val is None):
        raise ValueError("fit expected both x_val and y_val or neither, got only one")
    if x_val is not None:
        _check_data("fit (validation data)", net, x_val, y_val)
        y_val = np.asarray(y_val)
    if len(x) == 0:
        raise ValueError("fit expected at least one training example, got an empty x")
    return y, y_val


def _build_optimizer(net, optimizer, lr, momentum, weight_decay):
    """Split ``net`` for training and make the optimiser over its trainable parameters.

    Returns ``(body, prefix, first, keys, opt)``: :func:`_split`'s parts, the
    ``(layer, name)`` key of each parameter of ``body`` and the optimiser updating them.
    """
    body, prefix, first = _split(net)
    keys, arrays = _param_arrays(body)
    if not arrays:
        raise ValueError("fit expected a network with parameters, got one with none")
    opt = make_optimizer(optimizer, arrays, lr, momentum=momentum, weight_decay=weight_decay)
    return body, prefix, first, keys, opt


def _check_callbacks(callbacks):
    """``callbacks`` as a list of callables ``cb(net, step)`` (empty for None)."""
    callbacks = list(callbacks or ())
    if not all(callable(cb) for cb in callbacks):
        raise TypeError("fit expected callbacks as a sequence of callables cb(net, step)")
    return callbacks


@dataclass
class _Trainer:
    """What :func:`_train_epoch` needs besides the data, set up once by :func:`fit`.

    ``body``, ``prefix`` and ``first`` come from :func:`_split`, ``keys`` and ``opt`` from
    :func:`_build_optimizer`; ``jac_rng`` draws the penalty's projections; ``step``
    counts the updates made so far.
    """

    net: object
    body: object
    prefix: object
    first: int
    keys: list
    opt: object
    callbacks: list
    jacobian_reg: float
    jacobian_method: str
    jacobian_proj: int
    jac_rng: object
    step: int = 0


@dataclass
class _EpochSums:
    """Running totals of one epoch, summed over its minibatches, and its duration."""

    loss: float = 0.0
    correct: int = 0
    jacobian: float = 0.0
    seconds: float = 0.0


def _train_epoch(tr, x, y, order, batch_size, bar):
    """One pass over ``x[order]`` in minibatches of ``batch_size``: one update per
    minibatch, callbacks after each, the bar advanced; return the epoch's :class:`_EpochSums`."""
    net, body, prefix, first, keys, opt = tr.net, tr.body, tr.prefix, tr.first, tr.keys, tr.opt
    callbacks, jacobian_reg, jac_rng = tr.callbacks, tr.jacobian_reg, tr.jac_rng
    jacobian_method, jacobian_proj = tr.jacobian_method, tr.jacobian_proj
    step = tr.step
    loss_sum, correct, seen, jac_sum = 0.0, 0, 0, 0.0
    start = time.perf_counter()
    for lo in range(0, len(x), batch_size):
        idx = order[lo:lo + batch_size]
        xb, yb = x[idx], y[idx]
        if jacobian_reg:
            loss, z, jac, grads = _penalised_step(
                net, xb, yb, jacobian_reg, jacobian_method, jacobian_proj, jac_rng)
            steps = [grads[first + i][name] for i, name in keys]
            jac_sum += jac * len(idx)
        else:
            with train_mode(net):
                loss, z, grads = _step_grads(body, prefix, xb, yb)
            steps = [grads[i][name] for i, name in keys]
        opt.step(steps)
        step += 1
        for cb in callbacks:
            cb(net, step)
        loss_sum += loss * len(idx)
        correct += int((z.argmax(axis=1) == yb).sum())
        seen += len(idx)
        bar.update(len(idx))
        jac_text = f" jac {jac_sum / seen:.4f}" if jacobian_reg else ""
        bar.set_postfix_str(f"loss {loss_sum / seen:.4f}{jac_text} "
                            f"acc {correct / seen:.4f}")
    seconds = time.perf_counter() - start
    tr.step = step
    return _EpochSums(loss_sum, correct, jac_sum, seconds)


def _record_epoch(history, sums, n, lr, penalised):
    """Append one epoch's training metrics (means over its ``n`` examples) to ``history``."""
    history.seconds.append(sums.seconds)
    history.loss.append(sums.loss / n)
    history.accuracy.append(sums.correct / n)
    history.lr.append(lr)
    if penalised:
        history.jacobian.append(sums.jacobian / n)


def _validate_epoch(net, x_val, y_val, history, sums, n, bar):
    """Evaluate ``net`` on the validation set (if any) into ``history`` and the bar."""
    if x_val is None:
        return
    val_loss, val_acc = _val_metrics(logits_part(net), x_val, y_val)
    history.val_loss.append(val_loss)
    history.val_accuracy.append(val_acc)
    bar.set_postfix_str(f"loss {sums.loss / n:.4f} acc {sums.correct / n:.4f} "
                        f"val_acc {val_acc:.4f}")


def _finish_epoch(net, history, epoch, lr, checkpoint):
    """Stop on a diverged epoch, else save the checkpoint (if one is asked for)."""
    if not np.isfinite(history.loss[-1]):
        raise FloatingPointError(
            f"fit diverged in epoch {epoch + 1}: the mean loss is {history.loss[-1]}; "
            f"lower the learning rate (lr={lr})")
    if checkpoint is not None:
        save_checkpoint(net, checkpoint)


def fit(net, x, y, epochs=5, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0,
        optimizer="sgd", seed=0, progress=None, x_val=None, y_val=None, checkpoint=None,
        lr_decay=1.0, num_threads=None, callbacks=None, jacobian_reg=0.0,
        jacobian_method="output", jacobian_proj=1):
    """Train a classifier in place on softmax cross-entropy with minibatches.

    Parameter gradients come from each layer's ``param_vjp`` through
    ``net.forward_cached`` and ``net.backward``. If ``net`` ends in ``fd.Softmax`` (or
    ``fd.LogSoftmax``), that last layer is left out of training: the loss is the fused,
    stable log-softmax cross-entropy of the logits ``net[:-1](x)``, and ``net`` keeps
    its Softmax for inference.

    Parameters
    ----------
    net : Sequential
        Updated in place; its parameters keep their dtype.
    x, y : ndarray of shape (N, *S) (float32 or float64), and (N,) labels in ``[0, C)``
    epochs : int, default 5
    batch_size : int, default 32 (the last minibatch of an epoch may be smaller)
    lr : float, default 0.05
        Learning rate of the first epoch.
    momentum : float, default 0.9
        SGD momentum; for Adam, beta1 (0 means Adam's default 0.9).
    weight_decay : float, default 0
        L2 coefficient added to every parameter's gradient (biases included).
    optimizer : {"sgd", "adam"}, default "sgd"
    seed : int, default 0
        Seeds the shuffling (same seed, data and initial weights: identical weights).
    progress : bool or None, default None
        A bar with loss and accuracy (tqdm if installed); None: when stderr is a tty.
    x_val, y_val : ndarray, optional
        Held-out data evaluated after every epoch.
    checkpoint : str or Path, optional
        ``.npz`` saved after every epoch (the whole network; ``fd.load`` reads it).
    lr_decay : float, default 1
        The learning rate of epoch e (from 0) is ``lr * lr_decay ** e``.
    num_threads : int, optional
        Threads for Numba kernels and BLAS (BLAS needs threadpoolctl) while training;
        None keeps the current settings. See :func:`limited_threads`.
    callbacks : sequence of callables, optional
        Each is called as ``cb(net, step)`` after every update (``step`` counts updates
        from 1), e.g. :class:`fwdderiv.attribution.AttributionRecorder`.
    jacobian_reg : float, default 0
        lambda of Jacobian regularisation (Hoffman, Roberts and Yaida 2019): loss +=
        lambda/2 mean ||dZ/dx||_F^2 (:func:`fwdderiv.regularization.jacobian_penalty`
        on the logits Z); 0 turns it off (and draws no random numbers).
    jacobian_method : {"output", "input", "exact"}, default "output"
    jacobian_proj : int, default 1
        Random projections per example for the penalty's estimate. (BatchNorm layers
        train on batch statistics; docs/pages/training.md says how the penalty treats
        them.)

    Returns
    -------
    History
        Per-epoch loss, accuracy, validation metrics, learning rate and seconds.
    """
    _check_hyper(epochs, batch_size, lr_decay, lr, momentum, weight_decay)
    _check_jacobian(jacobian_reg, jacobian_method, jacobian_proj)
    y, y_val = _check_fit_data(net, x, y, x_val, y_val)
    body, prefix, first, keys, opt = _build_optimizer(net, optimizer, lr, momentum,
                                                      weight_decay)
    show = progress_enabled(progress)
    rng = np.random.default_rng(seed)
    history = History()
    n = len(x)
    # the penalty's projections have their own stream: the data order does not change
    jac_rng = np.random.default_rng([seed, 12])
    tr = _Trainer(net, body, prefix, first, keys, opt, _check_callbacks(callbacks),
                  jacobian_reg, jacobian_method, jacobian_proj, jac_rng)
    with limited_threads(num_threads):
        for epoch in range(epochs):
            opt.lr = lr * lr_decay ** epoch
            bar = make_bar(n, f"epoch {epoch + 1}/{epochs}", show)
            sums = _train_epoch(tr, x, y, rng.permutation(n), batch_size, bar)
            _record_epoch(history, sums, n, opt.lr, jacobian_reg)
            _validate_epoch(net, x_val, y_val, history, sums, n, bar)
            bar.close()
            _finish_epoch(net, history, epoch, lr, checkpoint)
    return history
