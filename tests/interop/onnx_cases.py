"""The onnx package's own node test cases for the operators fwdderiv imports.

The installed ``onnx`` ships the generators of its backend node tests
(``onnx.backend.test.case.node.<op>``), not their data files; each generator builds the
model and its reference inputs and outputs with NumPy. Only the modules of the supported
operators are run (generating all cases takes about a minute).
"""
import importlib

import numpy as np
import onnx
from onnx import numpy_helper

#: ONNX operator -> module of onnx.backend.test.case.node generating its cases.
OPERATORS = {
    "Conv": "conv", "Relu": "relu", "LeakyRelu": "leakyrelu", "Sigmoid": "sigmoid",
    "Tanh": "tanh", "Gelu": "gelu", "MaxPool": "maxpool", "AveragePool": "averagepool",
    "GlobalAveragePool": "globalaveragepool", "Gemm": "gemm", "MatMul": "matmul",
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Concat": "concat",
    "Flatten": "flatten", "Reshape": "reshape", "Transpose": "transpose",
    "Softmax": "softmax", "LogSoftmax": "logsoftmax", "BatchNormalization": "batch_normalization",
    "Pad": "pad", "Slice": "slice", "Dropout": "dropout", "Identity": "identity",
}


def collect(op_type):
    """The node test cases of one operator: a list of onnx TestCase tuples.

    The generators run when their module is imported (the metaclass of
    ``onnx.backend.test.case.base.Base`` calls every ``export*`` method), so the module is
    imported once, with the operator filter set."""
    if op_type not in _CACHE:
        from onnx.backend.test.case import node as cases
        cases._TargetOpType = op_type
        start = len(cases._NodeTestCases)
        try:
            importlib.import_module(f"onnx.backend.test.case.node.{OPERATORS[op_type]}")
        finally:
            cases._TargetOpType = None
        _CACHE[op_type] = list(cases._NodeTestCases[start:])
    return _CACHE[op_type]


_CACHE = {}


def single_input(case):
    """The case's model with every graph input but the first turned into an initializer
    (fwdderiv treats weights as constants), and the first input's data and the output."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    g = model.graph
    extra = list(g.input[1:])
    for vi, value in zip(extra, inputs[1:]):
        g.initializer.append(numpy_helper.from_array(np.asarray(value), vi.name))
        g.input.remove(vi)
    return model, np.asarray(inputs[0]), [np.asarray(o) for o in outputs]
