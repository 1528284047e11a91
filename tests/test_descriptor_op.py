"""TinChannelMean (the TIN descriptor as a custom op) vs NumPy, and its dispatch."""

import numpy as np
import pytest
import tensorflow as tf

from keras_tin.ops import custom_op
from keras_tin.ops import dispatch


@pytest.mark.parametrize("shape,channels", [((16, 7, 9, 64), 16), ((3, 1, 1, 32), 8),
                                            ((8, 70, 70, 16), 4)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_channel_mean_matches_numpy(shape, channels, dtype):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    xt = tf.cast(tf.constant(x), dtype)
    out = custom_op.channel_mean(xt, channels)
    assert out.dtype == tf.float32 and out.shape == (shape[0], channels)
    ref = tf.cast(xt, tf.float32).numpy()[..., :channels].astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)


def test_channel_mean_gradient_numerically():
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 3, 5, 16)).astype("float32"))
    theoretical, numerical = tf.test.compute_gradient(
        lambda t: custom_op.channel_mean(t, 8), [x], delta=1e-2)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(custom_op.channel_mean(x, 8) * tf.range(8, dtype=tf.float32))
    g = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(g[..., :8], np.broadcast_to(np.arange(8) / 15.0, g[..., :8].shape),
                               atol=1e-7)
    assert np.all(g[..., 8:] == 0)


def test_channel_mean_rejects_too_many_channels():
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="channels"):
        custom_op.channel_mean(tf.zeros((2, 3, 3, 8)), 16)


def test_descriptor_dispatch_follows_the_interlace_rules():
    x = tf.constant(np.random.default_rng(2).normal(size=(8, 6, 6, 32)).astype("float32"))
    ref = x.numpy()[..., :8].mean(axis=(1, 2))
    for implementation in ("auto", "portable", "custom_op"):
        fn = dispatch.descriptor_fn(implementation)
        np.testing.assert_allclose(fn(x, 8).numpy(), ref, atol=1e-6)

    @tf.function(jit_compile=True)
    def xla(t):
        return dispatch.descriptor_fn("auto")(t, 8)

    np.testing.assert_allclose(xla(x).numpy(), ref, atol=1e-6)  # falls back under XLA

    @tf.function
    def graph(t):
        return dispatch.descriptor_fn("auto")(t, 8)

    ops_used = {op.type for op in graph.get_concrete_function(x).graph.get_operations()}
    assert "TinChannelMean" in ops_used
    with dispatch.portable_only():
        traced = tf.function(lambda t: dispatch.descriptor_fn("auto")(t, 8))
        ops_used = {op.type for op in traced.get_concrete_function(x).graph.get_operations()}
    assert "TinChannelMean" not in ops_used
