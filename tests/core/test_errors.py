"""Bad input gets a clear error (component, expected, received, fix), never a NumPy
broadcasting traceback; odd but valid input just works."""
import numpy as np
import pytest

import fwdderiv as fd


def test_wrong_rank_names_layer_expected_received_and_fix():
    with pytest.raises(ValueError) as err:
        fd.Conv2d(1, 6, 5)(np.zeros((3, 28, 28), np.float32))
    msg = str(err.value)
    assert "Conv2d(1, 6, 5)" in msg and "(N, 1, H, W)" in msg and "got (3, 28, 28)" in msg
    assert "x[None]" in msg or "x[:, None]" in msg


def test_wrong_channel_count_in_a_sequential_names_the_layer_index():
    net = fd.models.lenet5()
    with pytest.raises(ValueError, match=r"Sequential layer 0, Conv2d\(1, 6, 5\) expected input of shape \(N, 1, H, W\), got \(2, 3, 32, 32\); the layer was built for 1 input channel"):
        net(np.zeros((2, 3, 32, 32)))


def test_shapes_that_do_not_chain_fail_at_check_time():
    net = fd.Sequential([fd.Conv2d(1, 4, 3), fd.Flatten(), fd.Linear(100, 10)])
    with pytest.raises(ValueError, match=r"layer 2, Linear.*expected input of shape \(N, 100\) or \(N, ..., 100\), got \(N, 144\)"):
        net.output_shape((1, 8, 8))
    assert net.output_shape((1, 7, 7)) == (10,)


def test_linear_on_images_suggests_flatten():
    with pytest.raises(ValueError, match="Flatten"):
        fd.Linear(4, 2)(np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, bool, object, np.float16])
def test_non_float_dtypes_are_type_errors_with_a_hint(dtype):
    x = np.zeros((1, 1, 32, 32), dtype=dtype)
    with pytest.raises(TypeError, match=r"float32 or float64.*astype"):
        fd.models.lenet5()(x)


def test_tangent_shape_must_match_x():
    net = fd.models.mlp(in_shape=(4,), hidden=(3,))
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"dx \(tangent\) of shape \(N, D, \*x.shape\[1:\]\) = \(2, D, 4\), got \(2, 4\)"):
        net.jvp(x, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"gy \(cotangent\)"):
        net.vjp(x, np.zeros((2, 3, 4)))


def test_empty_batch_returns_empty_results_of_the_right_shape():
    net = fd.models.lenet5()
    x = np.zeros((0, 1, 32, 32), np.float32)
    assert net(x).shape == (0, 10)
    for mode in ("forward", "reverse"):
        y, J = net.jacobian(x, mode=mode, return_output=True)
        assert J.shape == (0, 10, 1, 32, 32) and J.dtype == np.float32 and y.shape == (0, 10)
    assert net.jvp(x, np.zeros((0, 2, 1, 32, 32)))[1].shape == (0, 2, 10)


def test_non_contiguous_and_read_only_inputs_work():
    net = fd.models.lenet5()
    base = np.random.default_rng(0).random((4, 1, 32, 64))
    x = base[:, :, :, ::2]                      # strided view
    assert not x.flags.c_contiguous
    ro = np.ascontiguousarray(x)
    ro.setflags(write=False)
    np.testing.assert_array_equal(net.jacobian(x), net.jacobian(ro))
    np.testing.assert_array_equal(net(x), net(np.ascontiguousarray(x)))


def test_bad_mode_and_constructor_arguments():
    with pytest.raises(ValueError, match="mode must be 'forward' or 'reverse'"):
        fd.models.mlp(in_shape=(2,)).jacobian(np.zeros((1, 2)), mode="sideways")
    with pytest.raises(ValueError, match="divisible by groups"):
        fd.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        fd.MaxPool2d(0)
    with pytest.raises(ValueError, match="Dropout: p must be in"):
        fd.Dropout(1.5)
    with pytest.raises(TypeError, match="not a layer"):
        fd.Sequential([fd.ReLU(), "relu"])


def test_torch_tensor_input_gets_a_conversion_hint():
    import torch
    with pytest.raises(TypeError, match=r"detach\(\).cpu\(\).numpy\(\)"):
        fd.ReLU()(torch.zeros(2, 3))
