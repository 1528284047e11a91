"""The convolutions of the 3D / (2+1)D ResNets (torchvision `models/video/resnet.py`,
mmaction2 `Conv2plus1d`, VMZ), channels-last on (batch, frames, H, W, C).

A "conv kind" names how a 3x3x3 convolution of the ResNet is made:

- "3d": one Conv3D 3x3x3, stride (s, s, s) (torchvision Conv3DSimple; R3D);
- "2plus1d": Conv3D (1, 3, 3) stride (1, s, s) to `mid` channels + BN + ReLU, then Conv3D
  (3, 1, 1) stride (s, 1, 1) (torchvision Conv2Plus1D, mmaction2 Conv2plus1d; R(2+1)D);
- "notemporal": one Conv3D (1, 3, 3) stride (1, s, s) (torchvision Conv3DNoTemporal; MC3).

Layer names follow one scheme the key layouts map onto (keras_tin/weights/
layouts_video3d_*.py): a full conv is `<name>`, a factorised one `<name>_s` (spatial),
`<name>_bn_s`... see conv_factorized.
"""

import keras

from keras_tin.layers.conv3d_planar import PlanarConv3D

CONV_KINDS = ("3d", "2plus1d", "notemporal")


def middle_width(in_channels, out_channels, kernel=(3, 3, 3)):
    """Channels between the spatial and the temporal conv of a (2+1)D conv with the
    parameters of a full `kernel` conv in -> out (Tran et al. 2018, section 3.5):
    floor(kt * kh * kw * in * out / (kh * kw * in + kt * out)). torchvision and VMZ use it for
    3x3x3; mmaction2's Conv2plus1d writes it as int(3 * in * out * kh * kw / (in * kh * kw +
    3 * out)), which is the same number for kt = 3 and what it uses for its 1x1x1 shortcut
    (kt = 1 there, but mmaction2 keeps the 3): pass kernel=(3, 1, 1) for that."""
    kt, kh, kw = kernel
    return (kt * kh * kw * in_channels * out_channels) // (kh * kw * in_channels +
                                                           kt * out_channels)


class Initializers:
    """The publishers' initialisation (kaiming normal, fan_out, for convs; N(0, 0.01) for the
    classifier), seeded per layer from `seed` (seed + 1, seed + 2, ...) when given."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be None or an integer. Received: seed={seed!r}")
        self.seed, self.count = seed, 0

    def _next(self):
        if self.seed is None:
            return None
        self.count += 1
        return self.seed + self.count

    def conv(self):
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal",
                                                  seed=self._next())

    def dense(self):
        return keras.initializers.RandomNormal(0.0, 0.01, seed=self._next())


def conv3d(x, filters, kernel, strides, name, init):
    """Conv3D without bias and with PyTorch's symmetric zero padding (k - 1) // 2 per axis:
    "same" where that is the same thing (stride 1), else ZeroPadding3D + "valid". A
    PlanarConv3D: (1, k, k) and (k, 1, 1) kernels run as Conv2D (int8 in TFLite)."""
    kernel, strides = tuple(kernel), tuple(strides)
    pads = tuple((k - 1) // 2 for k in kernel)
    if not any(pads):
        padding = "valid"
    elif all(s == 1 for s in strides):
        padding = "same"
    else:
        x = keras.layers.ZeroPadding3D(pads, name=f"{name}_pad")(x)
        padding = "valid"
    return PlanarConv3D(filters, kernel, strides, padding=padding, use_bias=False,
                        kernel_initializer=init.conv(), name=name)(x)


def batch_norm(x, name, epsilon):
    """BatchNorm3d with PyTorch's momentum 0.1 (Keras 0.9) and the given eps."""
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=name)(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def conv_factorized(x, filters, mid, kernel, strides, name, bn_name, init, mid_epsilon):
    """A (2+1)D conv: `<name>_s` Conv3D (1, kh, kw) stride (1, sh, sw) to `mid` channels,
    `<bn_name>_s` BN (eps `mid_epsilon`) + ReLU, `<name>_t` Conv3D (kt, 1, 1) stride
    (st, 1, 1) to `filters`. The caller adds the BN after it."""
    kt, kh, kw = kernel
    st, sh, sw = strides
    x = conv3d(x, mid, (1, kh, kw), (1, sh, sw), f"{name}_s", init)
    x = batch_norm(x, f"{bn_name}_s", mid_epsilon)
    x = relu(x, f"{bn_name}_s_relu")
    return conv3d(x, filters, (kt, 1, 1), (st, 1, 1), f"{name}_t", init)


def conv_of_kind(x, kind, filters, mid, stride, name, bn_name, init, mid_epsilon):
    """The 3x3x3 conv of a basic block made as `kind` (see CONV_KINDS), spatial stride
    `stride`; its temporal stride is `stride` too except for "notemporal"."""
    if kind == "3d":
        return conv3d(x, filters, (3, 3, 3), (stride,) * 3, name, init)
    if kind == "notemporal":
        return conv3d(x, filters, (1, 3, 3), (1, stride, stride), name, init)
    if kind == "2plus1d":
        return conv_factorized(x, filters, mid, (3, 3, 3), (stride,) * 3, name, bn_name, init,
                               mid_epsilon)
    raise ValueError(f"conv kind must be one of {CONV_KINDS}. Received: {kind!r}")


def shortcut_strides(kind, stride):
    """The 1x1x1 shortcut's strides: torchvision's get_downsample_stride (no temporal stride
    for "notemporal")."""
    return (1, stride, stride) if kind == "notemporal" else (stride,) * 3
