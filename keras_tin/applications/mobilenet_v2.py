"""Temporal MobileNetV2: TIN, TSM and TSN on the mobile backbone.

torchvision-style MobileNetV2 (symmetric zero padding, bias-free convs, BatchNorm eps
1e-5, ReLU6). As in the TSM authors' mobile models, the temporal module sits only in the
inverted residual blocks that have a residual connection (stride 1, same width), on the
residual branch in front of the first (1x1 expansion) conv; the shortcut sees the
un-shifted input. Frames are folded into the batch inside the model and the TSN head
averages the per-frame logits, exactly as in the temporal ResNets.

TIN interlaces 4 equal channel groups, so it needs (channels // shift_div) % 4 == 0. With
shift_div=4 that holds for every MobileNetV2 width but 24 (stage 2): there the block uses
the divisor nearest to 4 that works (3 for 24 channels: 8 interlaced channels).
"""

import keras

from keras_tin import layers as tin_layers
from keras_tin.applications.blocks import batch_norm as _batch_norm
from keras_tin.applications.video_model import check_video_args
from keras_tin.applications.video_model import clip_input
from keras_tin.applications.video_model import finish_model
from keras_tin.applications.video_model import resolve_normalization
from keras_tin.layers.online_shift import OnlineTemporalShift
from keras_tin.applications.video_model import video_head
# (expansion t, output channels c, blocks n, first stride s), from the MobileNetV2 paper;
# the table is shared with the checkpoint layout (weights side, imported from there).
from keras_tin.weights.layouts_mobilenet import INVERTED_RESIDUAL_SETTINGS  # noqa: E402
TIN_SHIFT_DIV = 4
TSM_SHIFT_DIV = 8


def make_divisible(value, divisor=8):
    """Width rounding of the reference MobileNetV2 (never below 90% of `value`)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def tin_shift_div(channels, preferred=TIN_SHIFT_DIV):
    """The divisor nearest to `preferred` giving 4 equal interlaced groups, or None."""
    candidates = [d for d in range(2, channels + 1)
                  if channels % d == 0 and (channels // d) % 4 == 0]
    if not candidates:
        return None
    return min(candidates, key=lambda d: (abs(d - preferred), -d))


def _temporal_module(kind, frames, channels, name, implementation, online=False):
    if online:  # only "tsm" reaches here (TemporalMobileNetV2 refuses the others)
        return OnlineTemporalShift(frames, shift_div=TSM_SHIFT_DIV, name=name + "_tsm")
    if kind == "tin":
        div = tin_shift_div(channels)
        if div is None:
            return None
        return tin_layers.TemporalInterlace(frames, shift_div=div, implementation=implementation,
                                            name=name + "_tin")
    if kind == "tsm":
        return tin_layers.TemporalShift(frames, shift_div=TSM_SHIFT_DIV, name=name + "_tsm")
    return None


def _conv(filters, kernel_size, strides, name, module=None, fuse=True):
    return tin_layers.TemporalConv2D(filters, kernel_size, strides, padding=kernel_size // 2,
                                     temporal_module=module, fuse=fuse, name=name)


def _depthwise(x, strides, name):
    x = keras.layers.ZeroPadding2D(1, name=name + "_pad")(x)  # PyTorch's padding=1
    return keras.layers.DepthwiseConv2D(3, strides, padding="valid", use_bias=False,
                                        name=name)(x)


def _inverted_residual(x, filters, strides, expansion, name, temporal, frames, implementation,
                       fuse, online=False):
    channels = x.shape[-1]
    residual = strides == 1 and channels == filters
    module = None
    if residual:
        module = _temporal_module(temporal, frames, channels, name, implementation, online)
    y = x
    if expansion != 1:
        y = _conv(channels * expansion, 1, 1, name + "_expand", module, fuse)(y)
        y = keras.layers.ReLU(6.0)(_batch_norm(name + "_expand_bn")(y))
    elif module is not None:
        # No expansion conv to fuse into: apply the module on its own. (Unused with the
        # standard settings: the only t=1 block changes width, so it has no residual.)
        y = module(y)
    y = _depthwise(y, strides, name + "_depthwise")
    y = keras.layers.ReLU(6.0)(_batch_norm(name + "_depthwise_bn")(y))
    y = _conv(filters, 1, 1, name + "_project")(y)
    y = _batch_norm(name + "_project_bn")(y)
    if residual:
        y = keras.layers.Add(name=name + "_add")([x, y])
    return y


def TemporalMobileNetV2(temporal="tin", frames=8, include_top=True, weights=None,
                        input_tensor=None, input_shape=None, pooling=None, classes=400,
                        classifier_activation="softmax", dropout_rate=0.5, alpha=1.0,
                        partial_bn=False, normalization="auto", implementation="auto",
                        fuse=True, online=False, name=None):
    """Builds a temporal MobileNetV2; TINMobileNetV2 / TSMMobileNetV2 / TSNMobileNetV2 fix
    `temporal`.

    Arguments are those of `keras_tin.applications.TemporalResNet` (without `depth`), plus
    `alpha`, the width multiplier (1.0: 3.5M parameters with 1000 classes), and `online`:
    with temporal="tsm", the uni-directional shift of online TSM (OnlineTemporalShift:
    frame t sees only frames <= t), the model that `keras_tin.streaming` runs frame by frame.

    Returns:
        A keras.Model on clips of shape (batch, frames, H, W, 3), RGB in [0, 255].
    """
    normalization = resolve_normalization(normalization, weights)
    frames, classes = check_video_args(temporal, frames, include_top, pooling, classes,
                                       input_shape, normalization)
    if online not in (True, False):
        raise ValueError(f"online must be True or False. Received: online={online!r}")
    if online and temporal != "tsm":
        raise ValueError("online=True needs temporal='tsm' (the causal shift of online TSM; "
                         "TIN's offsets look into the future and TSN has nothing to run "
                         f"online). Received: temporal={temporal!r}")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number. Received: alpha={alpha!r}")
    inputs, x = clip_input(frames, input_tensor, input_shape, normalization)
    x = _conv(make_divisible(32 * alpha), 3, 2, "conv1")(x)
    x = keras.layers.ReLU(6.0)(_batch_norm("bn1")(x))
    index = 0
    for expansion, channels, blocks, first_stride in INVERTED_RESIDUAL_SETTINGS:
        filters = make_divisible(channels * alpha)
        for b in range(blocks):
            x = _inverted_residual(x, filters, first_stride if b == 0 else 1, expansion,
                                   f"block{index}", temporal, frames, implementation, fuse,
                                   online)
            index += 1
    last = make_divisible(1280 * max(1.0, alpha))
    x = _conv(last, 1, 1, "conv_last")(x)
    x = keras.layers.ReLU(6.0)(_batch_norm("conv_last_bn")(x))
    x = video_head(x, frames, include_top, pooling, classes, classifier_activation,
                   dropout_rate)
    default_name = f"{temporal}_online_mobilenet_v2" if online else f"{temporal}_mobilenet_v2"
    return finish_model(inputs, x, name or default_name, weights, partial_bn)


def _build(temporal, frames, include_top, weights, input_tensor, input_shape, pooling, classes,
           classifier_activation, dropout_rate, name, kwargs):
    return TemporalMobileNetV2(temporal, frames=frames, include_top=include_top, weights=weights,
                               input_tensor=input_tensor, input_shape=input_shape,
                               pooling=pooling, classes=classes,
                               classifier_activation=classifier_activation,
                               dropout_rate=dropout_rate, name=name, **kwargs)


def TINMobileNetV2(frames=8, include_top=True, weights=None, input_tensor=None,
                   input_shape=None, pooling=None, classes=400, classifier_activation="softmax",
                   dropout_rate=0.5, name=None, **kwargs):
    """TIN-MobileNetV2: `TemporalMobileNetV2(temporal="tin", ...)`; see it for arguments."""
    return _build("tin", frames, include_top, weights, input_tensor, input_shape, pooling,
                  classes, classifier_activation, dropout_rate, name, kwargs)


def TSMMobileNetV2(frames=8, include_top=True, weights=None, input_tensor=None,
                   input_shape=None, pooling=None, classes=400, classifier_activation="softmax",
                   dropout_rate=0.5, name=None, **kwargs):
    """TSM-MobileNetV2 (the TSM authors' mobile model): `TemporalMobileNetV2(temporal="tsm",
    ...)`; see it for arguments."""
    return _build("tsm", frames, include_top, weights, input_tensor, input_shape, pooling,
                  classes, classifier_activation, dropout_rate, name, kwargs)


def TSNMobileNetV2(frames=8, include_top=True, weights=None, input_tensor=None,
                   input_shape=None, pooling=None, classes=400, classifier_activation="softmax",
                   dropout_rate=0.5, name=None, **kwargs):
    """TSN-MobileNetV2 (no temporal module): `TemporalMobileNetV2(temporal="tsn", ...)`."""
    return _build("tsn", frames, include_top, weights, input_tensor, input_shape, pooling,
                  classes, classifier_activation, dropout_rate, name, kwargs)
