"""The per-example reading of ONNX files (``from_onnx(..., per_example=True)``), operator
by operator: each file below folds its input of shape (1, 4, 6) into (2, 2, 6), applies one
operator along axes that include the folded axis 0, and flattens the result back to batch
1. The imported network, at a batch of 3, must give for each example what onnx's reference
evaluator gives for that example alone, and its Jacobians must agree in both modes and
with central differences of the file run one example at a time."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import fwdderiv as fd
from fwdderiv.numeric import jacobian_fd

RNG = np.random.default_rng(0)


def _i(*v):
    return np.array(v, np.int64)


#: name -> (nodes from "f" (2, 2, 6) to "g", constants)
CASES = {
    "transpose": ([helper.make_node("Transpose", ["f"], ["g"], perm=[2, 0, 1])], {}),
    "transpose_default": ([helper.make_node("Transpose", ["f"], ["g"])], {}),
    "softmax_axis0": ([helper.make_node("Softmax", ["f"], ["g"], axis=0)], {}),
    "log_softmax_axis0": ([helper.make_node("LogSoftmax", ["f"], ["g"], axis=0)], {}),
    "reduce_mean_attr": ([helper.make_node("ReduceMean", ["f"], ["g"], axes=[0], keepdims=0)],
                         {}),
    "reduce_sum_input": ([helper.make_node("ReduceSum", ["f", "ax"], ["g"])], {"ax": _i(0, 2)}),
    "reduce_max_all": ([helper.make_node("ReduceMax", ["f"], ["g"], keepdims=1)], {}),
    "unsqueeze_squeeze": ([helper.make_node("Unsqueeze", ["f", "ax"], ["u"]),
                           helper.make_node("Squeeze", ["u"], ["g"])], {"ax": _i(0, -1)}),
    "slice_axis0": ([helper.make_node("Slice", ["f", "s", "e", "ax"], ["g"])],
                    {"s": _i(1), "e": _i(2), "ax": _i(0)}),
    "slice_no_axes": ([helper.make_node("Slice", ["f", "s", "e"], ["g"])],
                      {"s": _i(1, 0), "e": _i(2, 1)}),
    "pad_axis0": ([helper.make_node("Pad", ["f", "p"], ["g"])], {"p": _i(1, 0, 0, 0, 0, 2)}),
    "tile_axis0": ([helper.make_node("Tile", ["f", "r"], ["g"])], {"r": _i(2, 1, 1)}),
    "flatten_axis2": ([helper.make_node("Flatten", ["f"], ["g"], axis=2)], {}),
    "expand_rank": ([helper.make_node("Expand", ["f", "t"], ["g"])], {"t": _i(3, 2, 1, 6)}),
    "concat_constant": ([helper.make_node("Concat", ["c", "f"], ["g"], axis=0)],
                        {"c": RNG.standard_normal((1, 2, 6))}),
    "gather_axis0": ([helper.make_node("Gather", ["f", "i"], ["g"], axis=0)], {"i": _i(1, 0, 1)}),
    "gather_scalar": ([helper.make_node("Gather", ["f", "i"], ["g"])], {"i": np.array(1)}),
    "split_axis0": ([helper.make_node("Split", ["f", "sz"], ["a", "b"], axis=0),
                     helper.make_node("Mul", ["a", "b"], ["g"])], {"sz": _i(1, 1)}),
    "layer_norm_axis1": ([helper.make_node("LayerNormalization", ["f", "w", "bias"], ["g"],
                                           axis=1)],
                         {"w": RNG.standard_normal((2, 6)), "bias": RNG.standard_normal((2, 6))}),
    "matmul_of_values": ([helper.make_node("Transpose", ["f"], ["t"], perm=[0, 2, 1]),
                          helper.make_node("MatMul", ["f", "t"], ["g"])], {}),
    "add_broadcast_ranks": ([helper.make_node("ReduceSum", ["f", "ax"], ["r"], keepdims=0),
                             helper.make_node("Add", ["f", "r"], ["g"])], {"ax": _i(0)}),
    "gemm_rows": ([helper.make_node("Reshape", ["f", "t"], ["m"]),
                   helper.make_node("Gemm", ["m", "w", "bias"], ["g"], transB=1)],
                  {"t": _i(4, 6), "w": RNG.standard_normal((3, 6)),
                   "bias": RNG.standard_normal(3)}),
}


def _file(nodes, consts, opset=17):
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    inits += [numpy_helper.from_array(_i(2, 2, 6), "fold"), numpy_helper.from_array(_i(1, -1),
                                                                                   "flat")]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "fold"], ["f"])] + nodes +
        [helper.make_node("Reshape", ["g", "flat"], ["y"])], "folded",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_operator_on_a_folded_axis_reads_one_example_at_a_time(case):
    model = _file(*CASES[case])
    x = np.random.default_rng(1).standard_normal((3, 4, 6))
    net = fd.from_onnx(model, per_example=True)
    ref = ReferenceEvaluator(model)

    def file_per_example(xs):
        return np.concatenate([ref.run(None, {"x": xs[n:n + 1]})[0] for n in range(len(xs))])

    np.testing.assert_allclose(net(x), file_per_example(x), rtol=1e-11, atol=1e-12)
    J = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(net.jacobian(x, mode="forward"), J, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(J, jacobian_fd(file_per_example, x), rtol=1e-6, atol=1e-7)


def test_a_convolution_of_a_folded_axis_is_refused():
    """Conv takes axis 0 as items; when that axis is not of size 1 at batch 1 it cannot
    stand for the batch, and the refusal says so."""
    w = RNG.standard_normal((3, 2, 1, 1))
    model = _file([helper.make_node("Reshape", ["f", "t"], ["c"]),
                   helper.make_node("Conv", ["c", "w"], ["g"])], {"t": _i(2, 2, 2, 3), "w": w})
    with pytest.raises(ValueError, match=r"Conv\): an input of shape \(2, 2, 2, 3\) at batch 1 "
                                         r"\(axis 0 is not of size 1"):
        fd.from_onnx(model, per_example=True)


def test_a_fixed_batch_other_than_1_cannot_be_read_one_example_at_a_time():
    model = _file(*CASES["transpose"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(ValueError, match=r"input 'x': a fixed batch size 2; reading one "
                                         r"example at a time needs"):
        fd.from_onnx(model, per_example=True)


def test_a_batched_file_reads_the_same_one_example_at_a_time():
    """For a file that keeps examples apart, both readings are the same function; the
    led form keeps convolution, batch norm and pooling on the batch axis."""
    c = RNG.standard_normal
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["q"]),
             helper.make_node("Gemm", ["q", "fc"], ["y"], transB=1)]
    consts = {"w": c((3, 2, 3, 3)), "s": c(3), "b": c(3), "m": c(3), "v": 1 + c(3) ** 2,
              "fc": c((5, 12))}
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4))
    batched, apart = fd.from_onnx(model), fd.from_onnx(model, per_example=True)
    np.testing.assert_allclose(apart(x), batched(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(apart.jacobian(x), batched.jacobian(x), rtol=1e-12, atol=1e-13)
    kinds = [type(layer).__name__ for _, layer, _ in apart.nodes]
    assert "Reshape" not in kinds, kinds        # every form change cancelled out


def test_a_file_whose_output_at_batch_2_has_another_shape_is_refused():
    """Rows folded into axis 0 and flattened back to a fixed batch of 1: at batch 2 the
    file gives one row of 8 for two examples of 4, which the refusal names."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "rows"], ["r"]),
         helper.make_node("Reshape", ["r", "flat"], ["y"])], "frozen",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        [numpy_helper.from_array(_i(-1, 2), "rows"), numpy_helper.from_array(_i(1, -1), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match=r"an output of shape \(1, 8\) where each example's "
                                         r"make \(2, 4\).*pass per_example=True"):
        fd.from_onnx(model)
    x = np.random.default_rng(3).standard_normal((2, 4))
    np.testing.assert_array_equal(fd.from_onnx(model, per_example=True)(x), x)
