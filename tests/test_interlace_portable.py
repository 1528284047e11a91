"""The portable TIN/TSM ops and layers against the NumPy oracle of TIN_SPEC.md."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_tin import layers
from keras_tin.ops import portable
from reference import interlace_np
from reference import temporal_interlace_np
from reference import temporal_shift_np

OFFSET_CASES = {
    "negative": [-0.3, -1.7, 0.3, 1.7],
    "integer": [1.0, -1.0, -2.0 + 1e-9, 0.0],
    "near_limits": [1.999, -1.999, 1.6, -0.001],
    "mixed": [0.5, 1.25, -0.5, -1.25],
}


def random_layer(frames, channels, seed, shift_div=4):
    layer = layers.TemporalInterlace(frames, shift_div=shift_div)
    layer.build((None, 5, 6, channels))
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(scale=0.7, size=v.shape).astype("float32"))
    return layer, {v.name: v.numpy().astype(np.float64) for v in layer.weights}


@pytest.mark.parametrize("case", sorted(OFFSET_CASES))
@pytest.mark.parametrize("frames,clips,channels", [(8, 2, 16), (4, 3, 32), (3, 1, 64)])
def test_interlace_matches_numpy(case, frames, clips, channels):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(clips * frames, 3, 5, channels)).astype("float32")
    offsets = np.tile(np.asarray(OFFSET_CASES[case], np.float32), (clips, 1))
    offsets[-1] *= -1  # clips differ
    weights = rng.uniform(0, 2, size=(clips, frames, 4)).astype("float32")
    out = ops.convert_to_numpy(portable.interlace(x, offsets, weights, frames))
    ref = interlace_np(x, frames, offsets.astype(np.float64), weights)
    np.testing.assert_allclose(out, ref, atol=2e-6, rtol=0)
    delta = ops.convert_to_numpy(portable.interlace_delta(x, offsets, weights, frames))
    f = channels // 4
    np.testing.assert_allclose(delta, ref[..., :f] - x[..., :f], atol=2e-6, rtol=0)


def test_positive_offset_moves_content_later():
    frames = 5
    x = np.zeros((frames, 1, 1, 16), np.float32)
    x[1] = 1.0  # content at frame 1
    offsets = np.array([[1.0, 1.0, -1.0, -1.0]], np.float32)
    out = ops.convert_to_numpy(portable.interlace(x, offsets, np.ones((1, frames, 4)), frames))
    assert out[2, 0, 0, 0] == 1.0 and out[1, 0, 0, 0] == 0.0  # group 0: +1 -> frame 2
    assert out[0, 0, 0, 2] == 1.0  # group 2 (channel 2 of F=4): -1 -> frame 0
    assert np.all(out[:, 0, 0, 4:] == x[:, 0, 0, 4:])  # pass-through channels untouched


def test_layer_matches_numpy_end_to_end():
    frames = 4
    layer, params = random_layer(frames, 32, seed=2)
    x = np.random.default_rng(3).normal(size=(2 * frames, 5, 6, 32)).astype("float32")
    out = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, temporal_interlace_np(x, frames, params), atol=1e-5)


def test_initial_offsets_and_weights_follow_spec():
    layer = layers.TemporalInterlace(8)
    x = np.random.default_rng(0).normal(size=(16, 4, 4, 64)).astype("float32")
    layer.build(x.shape)
    layer.offset_fc2_kernel.assign(np.zeros((8, 2)))  # isolate the bias initialisation
    layer.weight_conv_kernel.assign(np.zeros(layer.weight_conv_kernel.shape))
    offsets, weights = (ops.convert_to_numpy(t) for t in layer.offsets_and_weights(x))
    np.testing.assert_allclose(offsets, [[0.5, 0.5, -0.5, -0.5]] * 2, atol=1e-4)
    np.testing.assert_allclose(weights, np.ones((2, 8, 4)), atol=1e-6)


def test_tsm_matches_numpy_and_channel_order():
    frames = 4
    x = np.random.default_rng(4).normal(size=(2 * frames, 3, 3, 16)).astype("float32")
    out = ops.convert_to_numpy(layers.TemporalShift(frames)(x))
    np.testing.assert_array_equal(out, temporal_shift_np(x, frames))
    # channel 0 of frame 0 holds frame 1 (from the future), channel 2 of frame 1 frame 0
    np.testing.assert_array_equal(out[0, ..., 0], x[1, ..., 0])
    np.testing.assert_array_equal(out[1, ..., 2], x[0, ..., 2])
    delta = ops.convert_to_numpy(layers.TemporalShift(frames).delta(x))
    np.testing.assert_array_equal(delta, out[..., :4] - x[..., :4])


@pytest.mark.parametrize("kind", ["tin", "tsm"])
@pytest.mark.parametrize("kernel_size,strides", [(1, 1), (3, 2)])
def test_fused_conv_equals_literal_composition(kind, kernel_size, strides):
    frames = 4
    x = np.random.default_rng(5).normal(size=(2 * frames, 7, 7, 32)).astype("float32")
    module = random_layer(frames, 32, 6)[0] if kind == "tin" else layers.TemporalShift(frames)
    fused = layers.TemporalConv2D(8, kernel_size, strides, kernel_size // 2, module, fuse=True)
    plain = layers.TemporalConv2D(8, kernel_size, strides, kernel_size // 2, module, fuse=False)
    fused.build(x.shape)
    plain.build(x.shape)
    plain.kernel.assign(fused.kernel)
    np.testing.assert_allclose(ops.convert_to_numpy(fused(x)), ops.convert_to_numpy(plain(x)),
                               atol=2e-5)


# ---- gradients -------------------------------------------------------------------------

def _np_offset_grad(x, frames, offsets, weights, upstream):
    """dL/db per clip and group from the spec: dY[t]/db = Xz[t-k-1] - Xz[t-k], times w."""
    nt, h, w, c = x.shape
    n, f = nt // frames, c // 4
    g_size = f // 4
    x5 = x.reshape(n, frames, h, w, c)
    u5 = upstream.reshape(n, frames, h, w, c)
    grad = np.zeros((n, 4))
    for b in range(n):
        for g in range(4):
            k = int(np.floor(offsets[b, g]))
            sl = slice(g * g_size, (g + 1) * g_size)
            for t in range(frames):
                s0, s1 = t - k, t - k - 1
                x0 = x5[b, s0, ..., sl] if 0 <= s0 < frames else 0
                x1 = x5[b, s1, ..., sl] if 0 <= s1 < frames else 0
                grad[b, g] += np.sum(u5[b, t, ..., sl] * weights[b, t, g] * (x1 - x0))
    return grad


@pytest.mark.parametrize("case", sorted(OFFSET_CASES))
def test_offset_gradient_matches_spec_formula(case):
    frames, clips = 5, 2
    rng = np.random.default_rng(7)
    x = rng.normal(size=(clips * frames, 2, 3, 16))
    offsets = np.tile(np.asarray(OFFSET_CASES[case]), (clips, 1))
    weights = rng.uniform(0.5, 1.5, size=(clips, frames, 4))
    upstream = rng.normal(size=x.shape)
    off = tf.Variable(offsets)
    with tf.GradientTape() as tape:
        y = portable.interlace(tf.constant(x), off, tf.constant(weights), frames)
        loss = tf.reduce_sum(y * upstream)
    grad = tape.gradient(loss, off).numpy()
    np.testing.assert_allclose(grad, _np_offset_grad(x, frames, offsets, weights, upstream),
                               atol=1e-9)


@pytest.mark.parametrize("case", ["negative", "mixed", "near_limits"])
def test_numerical_gradients(case):
    """Central differences in float64 w.r.t. input, offsets and weights (offsets away
    from integers, where the interpolation is differentiable)."""
    frames, clips = 4, 2
    rng = np.random.default_rng(8)
    x = rng.normal(size=(clips * frames, 2, 2, 16))
    offsets = np.tile(np.asarray(OFFSET_CASES[case]), (clips, 1))
    offsets[:, np.abs(offsets[0] - np.round(offsets[0])) < 1e-2] += 0.013
    weights = rng.uniform(0.5, 1.5, size=(clips, frames, 4))

    def f(x_, o_, w_):
        return portable.interlace(x_, o_, w_, frames)

    theoretical, numerical = tf.test.compute_gradient(
        f, [tf.constant(x), tf.constant(offsets), tf.constant(weights)], delta=1e-5)
    for th, nu in zip(theoretical, numerical):
        np.testing.assert_allclose(th, nu, atol=1e-6)


def test_input_gradient_is_the_adjoint_shift():
    """With offset +1 and unit weights, frame t's content goes to t+1: the gradient of
    frame s is the upstream gradient at s+1 (the direction one CUDA kernel gets wrong)."""
    frames = 4
    x = tf.Variable(np.random.default_rng(9).normal(size=(frames, 1, 1, 16)))
    upstream = np.arange(frames * 16, dtype=np.float64).reshape(frames, 1, 1, 16)
    offsets = tf.constant([[1.0, 1.0, 1.0, 1.0]], tf.float64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(portable.interlace(x, offsets, tf.ones((1, frames, 4), tf.float64),
                                                frames) * upstream)
    grad = tape.gradient(loss, x).numpy()
    np.testing.assert_array_equal(grad[:frames - 1, ..., :4], upstream[1:, ..., :4])
    np.testing.assert_array_equal(grad[frames - 1, ..., :4], 0.0)
    np.testing.assert_array_equal(grad[..., 4:], upstream[..., 4:])


def test_layer_gradient_reaches_every_weight():
    layer, _ = random_layer(4, 32, 10)
    x = tf.constant(np.random.default_rng(11).normal(size=(8, 4, 4, 32)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 8
    for v, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.any(g.numpy() != 0), v.name
