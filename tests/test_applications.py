"""Temporal ResNets: parameter counts, shapes, saving, XLA, mixed precision, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tin import applications
from keras_tin import layers
from keras_tin.utils import flops


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("constructor,classes,expected", [
    (applications.TINResNet50, 400, 24_358_640),
    (applications.TINResNet50, 174, 23_895_566),
    (applications.TSMResNet50, 400, 24_327_632),
    (applications.TSNResNet50, 400, 24_327_632),
])
def test_trainable_parameter_counts(constructor, classes, expected):
    model = constructor(frames=8, classes=classes)
    assert count(model.trainable_weights) == expected


def test_tin_extra_parameters_formula():
    """9F + T^2 + 3T + 5 per block: 31,008 in total for T = 8 (docs/TIN_SPEC.md)."""
    tin = applications.TINResNet50(frames=8)
    tins = [l for l in tin._flatten_layers() if isinstance(l, layers.TemporalInterlace)]
    assert len(tins) == 16
    assert sum(count(l.weights) for l in tins) == 31_008


def small(constructor, **kwargs):
    kwargs.setdefault("input_shape", (4, 32, 32, 3))
    kwargs.setdefault("classes", 5)
    return constructor(frames=4, base_filters=16, **kwargs)


def clips(n=2, frames=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, frames, size, size, 3)).astype(
        "float32")


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_depths_build_and_classify(depth):
    model = applications.TemporalResNet("tin", depth, frames=4, input_shape=(4, 32, 32, 3),
                                        classes=3, base_filters=16)
    out = model(clips(), training=False).numpy()
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    blocks = {18: 8, 34: 16, 50: 16, 101: 33}[depth]
    assert sum(isinstance(l, layers.TemporalInterlace) for l in model._flatten_layers()) == blocks


@pytest.mark.parametrize("temporal,layer,expected", [
    ("tsm", layers.TemporalShift, [f"layer{s}_{b}" for s, n in ((1, 3), (2, 4), (3, 23), (4, 3))
                                   for b in range(0, n, 2)]),
    ("tin", layers.TemporalInterlace, [f"layer{s}_{b}" for s, n in ((1, 3), (2, 4), (3, 23),
                                                                     (4, 3)) for b in range(n)]),
])
def test_resnet101_module_placement(temporal, layer, expected):
    """TSM-R101 shifts blocks 0, 2, 4, ... of each stage (18 of 33, the published n_round
    = 2); TIN-R101 keeps a module in all 33 blocks."""
    model = applications.TemporalResNet(temporal, 101, frames=4, input_shape=(4, 32, 32, 3),
                                        classes=3, base_filters=16)
    found = sorted(l.name.rsplit("_", 1)[0] for l in model._flatten_layers()
                   if isinstance(l, layer))
    assert found == sorted(expected)
    assert len(found) == {"tsm": 18, "tin": 33}[temporal]


def test_consensus_averages_per_frame_logits():
    model = small(applications.TSNResNet18, classifier_activation=None, dropout_rate=0.0)
    x = clips()
    per_frame = keras.Model(model.input, model.get_layer("fc").output)(x, training=False)
    np.testing.assert_allclose(model(x, training=False).numpy(),
                               per_frame.numpy().reshape(2, 4, 5).mean(axis=1), atol=1e-5)


def test_shortcut_sees_the_uninterlaced_input():
    """TIN lives inside each block's conv1; the shortcut (downsample conv, or the identity
    into the residual Add) takes the block input itself, not an interlaced copy."""
    model = small(applications.TINResNet18, include_top=False)
    conv1 = model.get_layer("layer1_0_conv1")
    assert isinstance(conv1.temporal_module, layers.TemporalInterlace)
    block_input = conv1.input
    assert model.get_layer("layer2_0_downsample_conv").input is \
        model.get_layer("layer2_0_conv1").input
    add = model.get_layer("layer1_0_out")._inbound_nodes[0].parent_nodes[0].operation
    assert isinstance(add, keras.layers.Add)
    assert any(t is block_input for t in add.input)  # identity shortcut


@pytest.mark.parametrize("pooling,shape", [(None, (2, 4, 1, 1, 128)), ("avg", (2, 128)),
                                           ("max", (2, 128))])
def test_include_top_false(pooling, shape):
    model = small(applications.TSMResNet18, include_top=False, pooling=pooling)
    assert tuple(model(clips(), training=False).shape) == shape


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = small(applications.TINResNet18)
    x = clips()
    path = tmp_path / "tin.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(model(x, training=False).numpy(),
                                  restored(x, training=False).numpy())


@pytest.mark.parametrize("layer", [
    layers.TemporalInterlace(8, shift_div=4, implementation="portable", name="t"),
    layers.TemporalShift(8, shift_div=8),
    layers.TemporalConv2D(16, 3, 2, 1, temporal_module=layers.TemporalShift(4), fuse=False),
    layers.FoldFrames(4), layers.UnfoldFrames(4), layers.FrameConsensus(4),
])
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


def test_weights_file_round_trip(tmp_path):
    model = small(applications.TINResNet18)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    other = small(applications.TINResNet18, weights=str(path))
    x = clips()
    np.testing.assert_array_equal(model(x, training=False).numpy(),
                                  other(x, training=False).numpy())


def tiny_temporal_model(kind, frames=4):
    """A TIN/TSM conv, BN, pooling and consensus: the model layers at XLA-test cost."""
    inputs = keras.Input((frames, 16, 16, 3))
    x = layers.FoldFrames(frames)(inputs)
    x = layers.TemporalConv2D(16, 3, 1, 1)(x)
    module = layers.TemporalInterlace(frames) if kind == "tin" else layers.TemporalShift(frames)
    x = layers.TemporalConv2D(16, 1, temporal_module=module)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = layers.FrameConsensus(frames)(keras.layers.Dense(5)(x))
    return keras.Model(inputs, keras.layers.Softmax()(x))


@pytest.mark.parametrize("kind", ["tin", "tsm"])
def test_jit_compile_fit_and_predict(kind):
    model = tiny_temporal_model(kind)
    model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
    x, y = clips(4, size=16), np.arange(4) % 5
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    eager = model(x, training=False).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), eager, atol=1e-5)
    xla = tf.function(lambda c: model(c, training=False), jit_compile=True)
    np.testing.assert_allclose(xla(tf.constant(x)).numpy(), eager, atol=1e-5)


def test_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = small(applications.TINResNet18)
        tin = model.get_layer("layer1_0_conv1").temporal_module
        assert tin.compute_dtype == "float16"
        feature = keras.ops.cast(
            np.random.default_rng(0).normal(size=(8, 8, 8, 16)), "float16")
        offsets, weights = tin.offsets_and_weights(feature)
        assert offsets.dtype == tf.float32 and weights.dtype == tf.float32
        out = model(clips(), training=False)
        assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
        model.compile("sgd", "sparse_categorical_crossentropy")
        loss = model.fit(clips(4), np.arange(4) % 5, epochs=1, batch_size=2, verbose=0)
        assert np.isfinite(loss.history["loss"][0])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_partial_bn_freezes_all_but_first():
    model = small(applications.TINResNet18, partial_bn=True)
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns[0].trainable and not any(b.trainable for b in bns[1:])
    before = [w.numpy().copy() for w in bns[1].non_trainable_weights]
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(clips(4), np.arange(4) % 5, epochs=1, batch_size=2, verbose=0)
    for b, a in zip(before, bns[1].non_trainable_weights):
        np.testing.assert_array_equal(b, a.numpy())  # moving statistics untouched


def test_flops_match_the_paper_scale():
    tsn = flops(applications.TSNResNet50(frames=8))
    tin = flops(applications.TINResNet50(frames=8))
    assert 32.5e9 < tsn < 33.5e9  # the paper's 33G for TSN-R50 8f at 224 px
    assert 1.0 < tin / tsn < 1.05


# ---- errors that quote the bad value ---------------------------------------------------

def test_frames_mismatch_between_model_and_data():
    model = small(applications.TINResNet18)
    with pytest.raises(ValueError, match=r"expected shape=\(None, 4, 32, 32, 3\), found shape=\(2, 6"):
        model(clips(frames=6))
    with pytest.raises(ValueError, match="built for frames=4, but the clips have 6 frames"):
        layers.FoldFrames(4)(clips(frames=6))


def test_wrong_rank_input():
    with pytest.raises(ValueError, match="rank 5"):
        layers.FoldFrames(4)(np.zeros((8, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="rank 4"):
        layers.TemporalInterlace(4)(np.zeros((2, 4, 8, 8, 16), "float32"))


def test_batch_not_divisible_by_frames():
    with pytest.raises(ValueError, match="folded batch 6 is not a multiple of frames=4"):
        layers.TemporalInterlace(4)(np.zeros((6, 8, 8, 16), "float32"))
    with pytest.raises(ValueError, match="folded batch 6"):
        layers.TemporalShift(4)(np.zeros((6, 8, 8, 16), "float32"))


def test_tin_channels_must_divide_by_16():
    with pytest.raises(ValueError, match="channels=24"):
        layers.TemporalInterlace(4)(np.zeros((4, 8, 8, 24), "float32"))
    with pytest.raises(ValueError, match="base_filters"):
        applications.TINResNet18(frames=4, base_filters=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temporal="tcn"), "temporal=.tcn"), (dict(depth=42), "depth=42"),
    (dict(pooling="sum", include_top=False), "pooling=.sum"), (dict(classes=0), "classes=0"),
    (dict(input_shape=(6, 64, 64, 3)), "6 frames but frames=4"),
    (dict(normalization="zscore"), "normalization=.zscore"),
    (dict(weights="missing.weights.h5"), "missing.weights.h5"),
])
def test_constructor_errors_quote_the_value(kwargs, match):
    args = dict(temporal="tin", depth=18, frames=4, input_shape=(4, 64, 64, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        applications.TemporalResNet(**args)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="frames=0"):
        layers.TemporalInterlace(0)
    with pytest.raises(ValueError, match="implementation='fast'"):
        layers.TemporalInterlace(8, implementation="fast")
