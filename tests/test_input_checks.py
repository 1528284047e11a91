"""Inputs the models used to accept silently: each is refused (or warned about) clearly."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tin import applications
from keras_tin import layers
from keras_tin.applications.video_model import check_video_args


@pytest.fixture(scope="module")
def model8():
    """A small 8-frame TSN-ResNet-18 (the input checks do not depend on the backbone)."""
    return applications.TSNResNet18(frames=8, input_shape=(8, 32, 32, 3), classes=5,
                                    base_filters=16)


def clips(n, frames, size=32, channels=3, high=255.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, high, size=(n, frames, size, size, channels)).astype("float32")


# ---- frame count unknown to the graph -----------------------------------------------------

def test_unknown_frame_count_is_checked_at_run_time_in_graphs(model8):
    """tf.function with None frames: 2 clips of 4 frames used to be read as 1 clip of 8."""
    fn = tf.function(lambda x: model8(x, training=False),
                     input_signature=[tf.TensorSpec((None, None, 32, 32, 3), tf.float32)])
    good = clips(1, 8)
    np.testing.assert_allclose(fn(good).numpy(), model8(good, training=False).numpy(),
                               atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"built for frames=8, but the clips have\] \[4\] \[frames"):
        fn(clips(2, 4))


def test_unknown_frame_count_fails_under_xla_too(model8):
    """XLA drops asserts; the fold then reshapes to batch * frames rows, which fails."""
    fn = tf.function(lambda x: model8(x, training=False), jit_compile=True,
                     input_signature=[tf.TensorSpec((None, None, 32, 32, 3), tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="reshape"):
        fn(clips(2, 4))


def test_fold_frames_layer_alone_in_a_graph():
    fold = layers.FoldFrames(4)
    fn = tf.function(fold, input_signature=[tf.TensorSpec((None, None, 2, 2, 3), tf.float32)])
    assert fn(clips(3, 4, size=2)).shape == (12, 2, 2, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"frames=4.*\[8\]"):
        fn(clips(1, 8, size=2))
    # A static frame axis adds no run-time check to the graph.
    static = tf.function(fold).get_concrete_function(tf.TensorSpec((None, 4, 2, 2, 3)))
    assert "Assert" not in {op.type for op in static.graph.get_operations()}


# ---- channels ---------------------------------------------------------------------------------

def test_one_channel_clips_are_refused(model8):
    """They used to broadcast through the Normalization layer to RGB."""
    with pytest.raises(ValueError, match="3 channels .RGB., but the clips have 1"):
        model8(clips(1, 8, channels=1))
    with pytest.raises(ValueError, match="3 channels"):
        applications.TSNResNet18(frames=8, classes=5, base_filters=16,
                                 input_tensor=keras.Input((8, 32, 32, 1)))


# ---- integer arguments ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(frames=True), "frames=True"), (dict(classes=True), "classes=True"),
    (dict(frames=np.bool_(True)), "frames="), (dict(frames=8.0), "frames=8.0"),
])
def test_bools_and_floats_are_refused(kwargs, match):
    args = dict(frames=8, classes=5, input_shape=(32, 32, 3), base_filters=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        applications.TSNResNet18(**args)


def test_numpy_integers_are_accepted():
    model = applications.TINResNet18(frames=np.int64(4), input_shape=(32, 32, 3), classes=5,
                                     base_filters=16)
    fold = model.get_layer("fold_frames")
    assert fold.frames == 4 and type(fold.frames) is int
    assert model(clips(1, 4), training=False).shape == (1, 5)
    # classes: the check accepts NumPy integers (see the report for video_head's Dense).
    check_video_args("tin", np.int32(8), True, None, np.int64(400), (8, 32, 32, 3), None)
    for layer in (layers.TemporalInterlace(np.int64(4)), layers.TemporalShift(np.int16(4)),
                  layers.FoldFrames(np.uint8(4)), layers.UnfoldFrames(np.int64(4)),
                  layers.FrameConsensus(np.int64(4))):
        assert type(layer.frames) is int and layer.frames == 4
    with pytest.raises(ValueError, match="frames=True"):
        layers.TemporalInterlace(True)
    with pytest.raises(ValueError, match="shift_div=True"):
        layers.TemporalShift(4, shift_div=True)


# ---- spatial size -------------------------------------------------------------------------

@pytest.mark.parametrize("input_shape", [(8, 0, 0, 3), (0, 32, 3), (8, 32, -1, 3),
                                         (8, 32.0, 32, 3)])
def test_non_positive_spatial_sizes_are_refused(input_shape):
    with pytest.raises(ValueError, match=r"input_shape (height|width) must be None or a "
                                         r"positive integer"):
        applications.TSNResNet18(frames=8, input_shape=input_shape, classes=5, base_filters=16)


# ---- 0-255 scale ----------------------------------------------------------------------------

def _range_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if "0-255 scale" in str(w.message)]


def test_unit_scale_clips_warn_once_on_eager_calls():
    model = applications.TSNResNet18(frames=4, input_shape=(4, 32, 32, 3), classes=5,
                                     base_filters=16)
    assert _range_warnings(lambda: model(clips(1, 4), training=False)) == []  # 0-255
    assert _range_warnings(lambda: model(np.zeros((1, 4, 32, 32, 3), "float32"))) == []
    # predict and other traced calls are not checked (no op is added to any graph).
    assert _range_warnings(lambda: model.predict(clips(1, 4, high=1.0), verbose=0)) == []
    found = _range_warnings(lambda: model(clips(1, 4, high=1.0), training=False))
    assert len(found) == 1 and "fold_frames" in str(found[0].message)
    assert _range_warnings(lambda: model(clips(1, 4, high=1.0), training=False)) == []  # once
    signed = applications.TSNResNet18(frames=4, input_shape=(4, 32, 32, 3), classes=5,
                                      base_filters=16)
    assert len(_range_warnings(lambda: signed(clips(1, 4, high=1.0) * 2 - 1))) == 1
    # A model without a normalization layer takes whatever scale its caller chose.
    raw = applications.TSNResNet18(frames=4, input_shape=(4, 32, 32, 3), classes=5,
                                   base_filters=16, normalization=None)
    assert _range_warnings(lambda: raw(clips(1, 4, high=1.0), training=False)) == []


def test_pixel_range_check_adds_nothing_to_graphs():
    fold = layers.FoldFrames(4, channels=3, check_pixel_range=True)
    concrete = tf.function(fold).get_concrete_function(tf.TensorSpec((None, 4, 2, 2, 3)))
    types = {op.type for op in concrete.graph.get_operations()}
    assert not types & {"Abs", "Max", "Assert"}, types
    config = fold.get_config()
    assert config["channels"] == 3 and config["check_pixel_range"] is True
    assert layers.FoldFrames.from_config(config).get_config() == config


# ---- TemporalInterlace.offsets_and_weights on an unbuilt layer ---------------------------

def test_offsets_and_weights_builds_an_unbuilt_layer():
    """The README snippet: TemporalInterlace(frames=8).offsets_and_weights(features)."""
    tin = layers.TemporalInterlace(frames=8, implementation="portable")
    features = np.random.default_rng(0).normal(size=(16, 4, 4, 32)).astype("float32")
    offsets, weights = tin.offsets_and_weights(features)
    assert tuple(offsets.shape) == (2, 4) and tuple(weights.shape) == (2, 8, 4)
    assert tin.built
    kernel = tin.offset_fc1_kernel
    tin(features)  # a later call keeps the weights it was built with
    assert tin.offset_fc1_kernel is kernel and len(tin.weights) == 8
    with pytest.raises(ValueError, match="rank 4"):
        layers.TemporalInterlace(frames=8).offsets_and_weights(features[None])


def test_numpy_integer_arguments_build_every_model():
    """frames, classes and base_filters as NumPy integers (e.g. from a config array) build
    the same model as Python ints, non-local blocks included; bools are refused."""
    import numpy as np
    import pytest

    from keras_tin.applications import TemporalResNet

    model = TemporalResNet("tin", 18, frames=np.int64(4), classes=np.int64(3),
                           base_filters=np.int32(16), input_shape=(4, 32, 32, 3),
                           non_local="dot_product")
    assert model.output_shape == (None, 3)
    with pytest.raises(ValueError, match="base_filters=True"):
        TemporalResNet("tsn", 18, frames=4, classes=3, base_filters=True)
