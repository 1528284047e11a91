"""The layers TEA, STM (and EAN, BQN) share: the temporal depthwise conv with identity /
shift initialisation and the next-frame difference, against PyTorch written from
ZOO_SPEC.md section 17 (Conv1d over T, groups=C; depthwise Conv2d; split/pad over T)."""

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keras_tin import layers

T = 4


def torch_temporal_conv(x, kernel, frames):
    """x (N*T, H, W, C), kernel (k, C) -> PyTorch Conv1d(C, C, k, groups=C, padding=k//2)."""
    nt, h, w, c = x.shape
    k = kernel.shape[0]
    xt = torch.from_numpy(x).view(-1, frames, h, w, c).permute(0, 2, 3, 4, 1)  # N,H,W,C,T
    xt = xt.reshape(-1, c, frames)
    weight = torch.from_numpy(np.ascontiguousarray(kernel.T)).unsqueeze(1)  # (C, 1, k)
    out = F.conv1d(xt, weight, padding=k // 2, groups=c)
    out = out.view(-1, h, w, c, frames).permute(0, 4, 1, 2, 3).reshape(nt, h, w, c)
    return out.numpy()


def torch_next_frame_difference(b, kernel, frames):
    """TEA MEModule's difference: conv2 (depthwise 3x3) of the next frame minus this one."""
    bt = torch.from_numpy(b).permute(0, 3, 1, 2)  # NCHW
    c = bt.shape[1]
    weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1)))  # (C,1,3,3)
    conv = F.conv2d(bt, weight, padding=1, groups=c)
    view = lambda y: y.view((-1, frames) + y.size()[1:])
    t_fea, _ = view(bt).split([frames - 1, 1], dim=1)
    _, t_plus_one = view(conv).split([1, frames - 1], dim=1)
    diff = F.pad(t_plus_one - t_fea, (0, 0, 0, 0, 0, 0, 0, 1))
    return diff.reshape(bt.shape).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("init,fold_div", [("identity", 8), ("tsm_shift", 2),
                                           ("tsm_shift", 8), ("stm_shift", 4), ("zeros", 4)])
def test_initial_kernels_move_the_channels_the_spec_says(init, fold_div):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * T, 3, 2, 16)).astype("float32")
    layer = layers.TemporalDepthwiseConv1D(T, init=init, fold_div=fold_div)
    y = keras.ops.convert_to_numpy(layer(x))
    clips = x.reshape(2, T, 3, 2, 16)
    nxt = np.concatenate([clips[:, 1:], np.zeros_like(clips[:, :1])], 1)
    prev = np.concatenate([np.zeros_like(clips[:, :1]), clips[:, :-1]], 1)
    fold = 16 // fold_div
    want = clips.copy()
    if init == "tsm_shift":  # TEA ShiftModule 'shift': [0, fold) from t+1, next fold t-1
        want[..., :fold] = nxt[..., :fold]
        want[..., fold:2 * fold] = prev[..., fold:2 * fold]
    elif init == "stm_shift":  # STM CSTM: first fold from t-1, last fold from t+1
        want[..., :fold] = prev[..., :fold]
        want[..., 16 - fold:] = nxt[..., 16 - fold:]
    elif init == "zeros":
        want = np.zeros_like(clips)
    np.testing.assert_array_equal(y, want.reshape(x.shape))


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_temporal_conv_matches_pytorch_conv1d(kernel_size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3 * T, 4, 3, 6)).astype("float32")
    layer = layers.TemporalDepthwiseConv1D(T, kernel_size=kernel_size)
    layer.build(x.shape)
    kernel = rng.normal(size=(kernel_size, 6)).astype("float32")
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)),
                               torch_temporal_conv(x, kernel, T), atol=1e-5)


def test_temporal_conv_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(T, 2, 2, 3)).astype("float64")
    kernel = rng.normal(size=(3, 3))
    # Gradient of sum(out * g) w.r.t. the kernel, TensorFlow's vs finite differences of the PyTorch reference.
    g = rng.normal(size=x.shape)

    def loss(k):
        return float((torch_temporal_conv(x, k, T) * g).sum())

    eps = 1e-6
    numeric = np.zeros_like(kernel)
    for idx in np.ndindex(kernel.shape):
        up, down = kernel.copy(), kernel.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (loss(up) - loss(down)) / (2 * eps)
    import tensorflow as tf
    layer = layers.TemporalDepthwiseConv1D(T, dtype="float64")
    layer.build(x.shape)
    layer.kernel.assign(kernel)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(tf.constant(x)) * g)
    analytic = tape.gradient(out, layer.kernel).numpy()
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_next_frame_difference_matches_tea_me_front_end():
    rng = np.random.default_rng(3)
    b = rng.normal(size=(2 * T, 5, 4, 6)).astype("float32")
    layer = layers.NextFrameDifference(T)
    layer.build(b.shape)
    kernel = rng.normal(size=(3, 3, 6, 1)).astype("float32")
    layer.kernel.assign(kernel)
    y = keras.ops.convert_to_numpy(layer(b))
    np.testing.assert_allclose(y, torch_next_frame_difference(b, kernel, T), atol=1e-5)
    assert not y.reshape(2, T, -1)[:, -1].any()  # zero at each clip's last frame


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match="init must be one of"):
        layers.TemporalDepthwiseConv1D(8, init="shift")
    with pytest.raises(ValueError, match="kernel_size must be odd. Received: kernel_size=2"):
        layers.TemporalDepthwiseConv1D(8, kernel_size=2)
    with pytest.raises(ValueError, match="multiple of frames=4"):
        layers.NextFrameDifference(4)(np.zeros((6, 2, 2, 3), "float32"))


def test_layers_round_trip_through_their_config():
    for layer in (layers.TemporalDepthwiseConv1D(8, init="stm_shift", fold_div=4),
                  layers.NextFrameDifference(8)):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
