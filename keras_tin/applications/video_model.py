"""What every keras_tin video model shares: the clip input, and the TSN-style head."""

import numbers

import keras

from keras_tin import layers as tin_layers
from keras_tin.applications.partial_bn import freeze_batchnorm
from keras_tin.layers.temporal_interlace import positive_int

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # x / 127.5 - 1
    "tadaconv": ((114.75, 114.75, 114.75), (57.375, 57.375, 57.375)),  # 0.45 / 0.225 on 0-1
    # torchvision video / VMZ: Kinetics mean (0.43216, 0.394666, 0.37645), std (0.22803,
    # 0.22145, 0.216989) on 0-1 RGB, times 255
    "kinetics": ((110.2008, 100.63983, 95.99475), (58.14765, 56.46975, 55.332195)),
}
TEMPORAL_MODULES = ("tin", "tsm", "tsn")


def resolve_normalization(normalization, weights):
    """normalization="auto": the manifest record's input normalisation when `weights` names
    a pretrained checkpoint (e.g. "inception" for the mmaction2 v1.0 TIN files, trained with
    x/127.5 - 1), else "imagenet". Any other value is returned as given."""
    if normalization != "auto":
        return normalization
    if isinstance(weights, str):
        from keras_tin.weights import registry
        if registry.is_pretrained_name(weights):
            return registry.get_record(weights)["normalization"]
    return "imagenet"


def check_video_args(temporal, frames, include_top, pooling, classes, input_shape,
                     normalization, kinds=TEMPORAL_MODULES, poolings=(None, "avg", "max")):
    """Refuses bad constructor arguments with an error quoting the value; returns
    (frames, classes) as Python ints (classes unchanged without a top).

    frames and classes: Python or NumPy integers >= 1 (bools are refused, although
    True == 1); input_shape: (frames, H, W, 3) or (H, W, 3), H and W None or >= 1;
    temporal: one of `kinds` (TemporalResNet passes the temporal-module registry's names).
    """
    if temporal not in kinds:
        raise ValueError(f"temporal must be one of {tuple(kinds)}. Received: temporal={temporal!r}")
    frames = positive_int(frames, "frames")
    if pooling not in poolings:
        raise ValueError(f"pooling must be one of {poolings}. Received: pooling={pooling!r}")
    if include_top:
        classes = positive_int(classes, "classes")
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be None or one of {sorted(NORMALIZATIONS)}. "
                         f"Received: normalization={normalization!r}")
    if input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) == 4 and shape[0] not in (None, frames):
            raise ValueError(f"input_shape={shape} has {shape[0]} frames but frames={frames}.")
        if len(shape) not in (3, 4) or shape[-1] != 3:
            raise ValueError("input_shape must be (frames, height, width, 3) or (height, width, 3)."
                             f" Received: input_shape={shape}")
        for axis, size in (("height", shape[-3]), ("width", shape[-2])):
            if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral)
                                     or size < 1):
                raise ValueError(f"input_shape {axis} must be None or a positive integer. "
                                 f"Received: input_shape={shape}")
    return frames, classes


def clip_input(frames, input_tensor, input_shape, normalization):
    """Returns (model inputs, folded frames (B*T, H, W, 3) normalised as asked).

    FoldFrames comes first, on the raw clips: it checks the frame count (also at run time
    in graphs traced with an unknown frame count), that the clips have 3 channels (the
    Normalization layer would broadcast a 1-channel clip to RGB), and, for a model that
    normalises its input, warns once when an eager call gets clips on the 0-1 (or -1-1)
    scale instead of 0-255 RGB. Normalising folded frames is the same per-channel
    arithmetic.
    """
    frames = positive_int(frames, "frames")
    if input_tensor is None:
        shape = (frames, 224, 224, 3) if input_shape is None else (frames,) + tuple(input_shape)[-3:]
        inputs = keras.Input(shape=shape, name="clips")
        x = inputs
    else:
        inputs = keras.utils.get_source_inputs(input_tensor)
        x = input_tensor
    x = tin_layers.FoldFrames(frames, channels=3, check_pixel_range=normalization is not None,
                              name="fold_frames")(x)  # (B*T, H, W, 3)
    if normalization is not None:
        mean, std = NORMALIZATIONS[normalization]
        x = keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                                       name="normalization")(x)
    return inputs, x


def video_head(x, frames, include_top, pooling, classes, classifier_activation, dropout_rate,
               pool=None):
    """Per-frame features (B*T, h, w, C) -> the model output.

    include_top: per-frame logits averaged over frames (TSN consensus), then the activation.
    Otherwise pooling None gives (B, T, h, w, C), "avg"/"max" give (B, C).
    pool: a "head" temporal module (e.g. TCP), a callable (B*T, h, w, C) -> (B, D) that
    replaces pooling and the frame consensus: the classifier then sees clip features, and
    without a top the model outputs them. Such a head and its classifier run in float32.
    """
    if pool is not None:
        x = pool(x)
        if not include_top:
            return x
        x = keras.layers.Dropout(dropout_rate, name="dropout", dtype="float32")(x)
        x = keras.layers.Dense(classes, name="fc", dtype="float32")(x)
        return keras.layers.Activation(classifier_activation, dtype="float32",
                                       name="predictions")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B*T, C)
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Dense(classes, name="fc")(x)  # per-frame logits
        x = tin_layers.FrameConsensus(frames, name="consensus")(x)  # (B, classes)
        return keras.layers.Activation(classifier_activation, dtype="float32",
                                       name="predictions")(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return tin_layers.FrameConsensus(frames, name="consensus")(x)
    if pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
        x = tin_layers.UnfoldFrames(frames, name="unfold_frames")(x)
        return keras.layers.GlobalMaxPooling1D(name="max_over_frames")(x)
    return tin_layers.UnfoldFrames(frames, name="unfold_frames")(x)  # (B, T, h, w, C)


def finish_model(inputs, outputs, name, weights, partial_bn):
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        from keras_tin.applications.records import build_for_record
        from keras_tin.weights.loading import load_weights
        load_weights(model, weights, build_source=build_for_record)
    if partial_bn:
        freeze_batchnorm(model)
    return model
