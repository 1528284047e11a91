"""Multiply-accumulate counts per clip: the "FLOPs" of the TIN/TSM/TSN papers.

Counts convolutions and dense layers (BatchNorm, activations, pooling and adds are
left out, as in the papers), plus the temporal modules' own arithmetic. A
TemporalConv2D is counted as the architecture defines it (module, then conv),
not as its fused delta evaluation: the architecture's cost, independent of how
we evaluate it.

Networks that stack a clip's frames along the channels (SqueezeTime: a layer with
`folds_time_into_channels = True` after FoldFrames) compute once per clip from there on:
their layers are counted once, not once per frame. So are networks with Conv3D layers
(the 3D / (2+1)D CNNs of keras_tin.applications.video3d), whose layers see whole clips: a
Conv3D counts its output positions over time and space.
"""

import math

import keras

from keras_tin.layers import FoldFrames
from keras_tin.layers import TemporalConv2D
from keras_tin.layers import TemporalInterlace


def _hw(shape):
    return shape[1] * shape[2]


def _tin_macs(layer, in_shape):
    """Per frame: descriptor mean, the OffsetNet/WeightNet (per clip / T), interlace."""
    h, w = in_shape[1], in_shape[2]
    f = in_shape[-1] // layer.shift_div
    t = layer.frames
    descriptor = h * w * f
    nets = (3 * f + t * t + 2 * t + 3 * f * 2 * t) / t  # OffsetNet per clip + WeightNet per frame
    interlace = 3 * h * w * f  # two interpolation taps and the weight
    return descriptor + nets + interlace


def _layer_macs(layer):
    """MACs of one layer per image (one folded frame, or one row for dense layers).

    A keras_tin layer with its own arithmetic defines `macs_per_frame()` (MACs per folded
    frame, from its built input/output shapes); it is used instead of the rules below."""
    if callable(getattr(layer, "macs_per_frame", None)):
        return layer.macs_per_frame()
    if isinstance(layer, TemporalConv2D):
        in_shape, out_shape = layer.input.shape, layer.output.shape
        macs = _hw(out_shape) * layer.kernel_size ** 2 * in_shape[-1] * layer.filters
        if isinstance(layer.temporal_module, TemporalInterlace):
            macs += _tin_macs(layer.temporal_module, in_shape)
        return macs
    if isinstance(layer, keras.layers.Conv3D):
        kt, kh, kw = layer.kernel_size
        cin = layer.input.shape[-1] // layer.groups
        return math.prod(layer.output.shape[1:4]) * kt * kh * kw * cin * layer.filters
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return _hw(layer.output.shape) * kh * kw * layer.output.shape[-1]
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1] // layer.groups
        return _hw(layer.output.shape) * kh * kw * cin * layer.filters
    if isinstance(layer, keras.layers.Dense):
        rows = math.prod(d for d in layer.input.shape[1:-1] if d) or 1
        return rows * layer.input.shape[-1] * layer.units
    return 0


def flops(model):
    """Multiply-accumulates for one clip (batch 1) of `model`, as an int.

    The model must have a fixed input size, e.g. (frames, 224, 224, 3).
    """
    layers = list(model._flatten_layers(include_self=False))
    folds = [layer for layer in layers if isinstance(layer, FoldFrames)]
    if not folds:
        raise ValueError(f"Model '{model.name}' has no FoldFrames layer: flops() counts "
                         "keras_tin video models on (batch, frames, H, W, 3) clips.")
    frames = folds[0].frames
    if any(getattr(layer, "folds_time_into_channels", False) for layer in layers):
        frames = 1  # one image of 3*T channels per clip after the fold
    if any(isinstance(layer, keras.layers.Conv3D) for layer in layers):
        frames = 1  # a 3D CNN: its layers see whole clips (B, T, H, W, C)
    shape = model.inputs[0].shape
    if any(d is None for d in shape[1:]):
        raise ValueError(f"flops() needs a fixed input size. Received: input shape={shape}")
    per_frame = 0
    for layer in layers:
        if isinstance(layer, TemporalConv2D) or layer.__class__ in (
                keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense) or (
                isinstance(layer, keras.layers.Conv3D)) or (
                callable(getattr(layer, "macs_per_frame", None))):
            per_frame += _layer_macs(layer)
    return int(round(per_frame * frames))
