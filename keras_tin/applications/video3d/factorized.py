"""What the factorised 3D ResNets (R(2+1)D-50 of pytorchvideo, P3D) share: the 5-D clip
input, PyTorch-padded convs (keras_tin.layers.PlanarConv3D), BatchNorm with PyTorch's defaults, seeded initialisers and
the clip head. Tensors are (batch, frames, H, W, C) throughout."""

import keras

from keras_tin import layers as tin_layers
from keras_tin.applications.video_model import clip_input
from keras_tin.layers.temporal_interlace import positive_int

POOLINGS = (None, "avg", "max")


class Initializers:
    """Per-layer initialisers: seeded (seed, seed + 1, ...) when `seed` is given, else a
    fresh unseeded object per layer (keras.utils.set_random_seed then makes builds
    reproducible, and same-shape layers still start differently)."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be None or an integer. Received: seed={seed!r}")
        self.seed = seed
        self.count = 0

    def _next(self):
        if self.seed is None:
            return None
        self.count += 1
        return self.seed + self.count

    def conv(self):  # kaiming normal, fan_out (pytorchvideo's c2_msra_fill; the P3D port's)
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal",
                                                  seed=self._next())

    def dense(self, std=0.01):
        return keras.initializers.RandomNormal(0.0, std, seed=self._next())


def conv3d(x, filters, kernel, strides, name, init):
    """Conv3D (no bias) with PyTorch's symmetric zero padding (k - 1) // 2 per axis."""
    pads = tuple((k - 1) // 2 for k in kernel)
    strides = tuple(strides)
    if any(pads) and any(s > 1 for s in strides):
        x = keras.layers.ZeroPadding3D(pads, name=f"{name}_pad")(x)
        padding = "valid"
    else:  # stride 1 with odd kernels: "same" is the symmetric padding
        padding = "same" if any(pads) else "valid"
    # PlanarConv3D: a Conv3D running these (1,k,k) / (k,1,1) kernels as 2-D convs, so that
    # TFLite int8 quantizes them (it has no int8 CONV_3D).
    return tin_layers.PlanarConv3D(filters, kernel, strides, padding=padding, use_bias=False,
                                   kernel_initializer=init.conv(), name=name)(x)


def batch_norm(name, zero_gamma=False):
    """BatchNorm3d/2d defaults: eps 1e-5, momentum 0.1 (Keras 0.9)."""
    return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name,
                                           gamma_initializer="zeros" if zero_gamma else "ones")


def conv_bn(x, filters, kernel, strides, name, bn_name, init, relu=True, zero_gamma=False):
    x = conv3d(x, filters, kernel, strides, name, init)
    x = batch_norm(bn_name, zero_gamma)(x)
    return keras.layers.ReLU(name=f"{bn_name}_relu")(x) if relu else x


def check_pooling(pooling, include_top, classes):
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    return positive_int(classes, "classes") if include_top else classes


def video_input(frames, input_tensor, input_shape, normalization):
    """(model inputs, normalised clips (batch, frames, H, W, 3)): the checks and the
    normalisation of every keras_tin video model (video_model.clip_input), kept 5-D."""
    inputs, x = clip_input(frames, input_tensor, input_shape, normalization)
    return inputs, tin_layers.UnfoldFrames(frames, name="unfold_frames")(x)


def clamp_pool(pool, shape):
    """The head pool kernel, cut to the feature map where it is smaller (a static size)."""
    return tuple(p if s is None else min(p, s) for p, s in zip(pool, shape))


def clip_head(x, include_top, pooling, classes, classifier_activation, dropout_rate, init,
              pool_size=None):
    """(batch, t, h, w, C) -> the model output.

    include_top: the mean over the positions of a stride-1 average pool of pool_size (cut
    to the map; pytorchvideo's ResNetBasicHead: pool, proj per position, global average;
    proj is linear so it commutes with the average), dropout, fc and the activation. Without the top: pooling None gives the feature map, "avg"/"max" (batch, C).
    """
    if include_top:
        sizes = tuple(x.shape[1:4])
        covered = (pool_size is None or None in sizes  # unknown sizes: a global average
                   or clamp_pool(pool_size, sizes) == sizes)
        if covered:  # one pool position (the published 16 x 224 x 224): a global average
            x = keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
        else:
            x = tin_layers.WindowedGlobalAveragePooling3D(pool_size, name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Dense(classes, kernel_initializer=init.dense(), name="fc")(x)
        return keras.layers.Activation(classifier_activation, dtype="float32",
                                       name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling3D(name="max_pool")(x)
    return x
