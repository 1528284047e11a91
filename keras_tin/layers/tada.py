"""TAdaConv / TAda2D (Huang et al., "TAda! Temporally-Adaptive Convolutions for Video
Understanding", ICLR 2022; alibaba-mmai-research/TAdaConv).

A TAda2D block replaces the 3x3 conv of a ResNet bottleneck (its "b" conv) by a
temporally adaptive conv whose kernel is calibrated per clip and frame:

    W[n, t] = alpha[n, t] (x) W      (alpha scales the kernel's INPUT channels)

alpha comes from a small route function on the conv's input x (batch, T, H, W, C):

    p[n, t]  = mean over H, W of x[n, t]                       (per-frame descriptor)
    g[n]     = mean over T, H, W of x[n]                       (clip descriptor)
    d[n, t]  = p[n, t] + G g[n] + g_bias                       (1x1x1 conv C -> C, bias)
    h        = ReLU(BN(TConv_a(d)))                            (k=3 over T, C -> C/4, bias)
    alpha    = TConv_b(h) + 1                                  (k=3 over T, C/4 -> C, no bias,
                                                                zero-initialised: alpha = 1)

Because alpha is constant over space and the conv's zero padding stays zero when scaled,

    conv(x[n, t], alpha[n, t] (x)_cin W) = conv(alpha[n, t] * x[n, t], W)

so the temporally adaptive conv is computed here EXACTLY as a per-frame channel scaling
of the input (`TAdaCalibration`) followed by one ordinary shared 3x3 conv: no per-sample
kernels, so it runs under XLA and exports to TFLite builtins. The publisher computes the
same thing as a grouped conv over batch*T per-sample kernels (tests compare the two).

The block then aggregates over time: y = BN_b(conv) + BN_pool(AvgPool_T(conv)), the
average pool over 3 frames with stride 1 and zero padding counted (PyTorch AvgPool3d's
count_include_pad=True: the border frames are divided by 3 too), BN_pool's gamma and beta
zero at initialisation (so a fresh block is the plain conv + BN); then ReLU (bottleneck).

Layers are top-level functional layers named from the block ("layer2_0"):
    layer2_0_tada_rf_g    TAdaRouteInput   route input d (variables kernel (C, C), bias)
    layer2_0_tada_rf_a    TAdaRouteConv1D  temporal conv C -> C/4, bias
    layer2_0_tada_rf_bn   BatchNormalization
    layer2_0_tada_rf_b    TAdaRouteConv1D  temporal conv C/4 -> C, no bias, zeros
    layer2_0_tada_scale   TAdaCalibration  x * alpha
    layer2_0_conv2        TemporalConv2D   the shared base kernel W (3x3, stride)
    layer2_0_bn2          BatchNormalization (BN_b)
    layer2_0_tada_pool    TemporalAveragePooling (3 frames, count_include_pad)
    layer2_0_tada_pool_bn BatchNormalization (BN_pool, gamma = beta = 0 at init)
The base conv and BN_b keep the plain ResNet's names, so a ResNet's conv2/bn2 weights go
where the publisher's conversion of ImageNet weights puts them.
"""

import keras
from keras import ops

from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int

ROUTE_RATIO = 4  # the publisher's ROUTE_FUNC_R
ROUTE_KERNELS = (3, 3)  # ROUTE_FUNC_K
POOL_FRAMES = 3  # POOL_K[0]
_BN_EPSILON = 1e-5  # PyTorch BatchNorm defaults (the publisher's BN.EPS / BN.MOMENTUM)
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1


def _msra():
    """The publisher's c2_msra_fill on the route function's Conv3d layers.

    A new initializer per variable: an unseeded Keras initializer draws its seed when it
    is constructed (from Python's `random`, which keras.utils.set_random_seed seeds) and
    then gives the same values on every call, so one module-level instance would be
    seeded at import time (different in every process, whatever set_random_seed says)
    and would initialise every route layer of the same shape identically.
    """
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _clips(x, frames):
    """(batch*frames, ...) -> (batch, frames, ...)."""
    shape = ops.shape(x)
    return ops.reshape(x, (-1, frames) + tuple(shape[1:]))


@keras.saving.register_keras_serializable(package="keras_tin")
class TAdaRouteInput(keras.layers.Layer):
    """The route function's input: d[n, t] = p[n, t] + g[n] @ kernel + bias.

    p[n, t] is frame t's spatial mean and g[n] the clip's mean over frames and space
    (the publisher's avgpool / globalpool and its 1x1x1 conv `g`, C -> C with bias).
    kernel (C_in, C_out) = the PyTorch weight (C_out, C_in, 1, 1, 1) squeezed and
    transposed.

    Input: folded frames (batch * frames, H, W, C). Output: (batch, frames, C).
    """

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name} needs a known channel count. Received: "
                             f"input shape {tuple(input_shape)}")
        self.kernel = self.add_weight((channels, channels), initializer=_msra(), name="kernel")
        self.bias = self.add_weight((channels,), initializer="zeros", name="bias")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        p = _clips(ops.mean(inputs, axis=(1, 2)), self.frames)  # (B, T, C)
        g = ops.mean(p, axis=1)  # equal frame sizes: the mean over T, H, W
        g = ops.matmul(g, ops.cast(self.kernel, g.dtype)) + ops.cast(self.bias, g.dtype)
        return p + g[:, None, :]

    def macs_per_frame(self):
        # The 1x1x1 conv runs once per clip; the spatial means are pooling (not counted).
        channels = self.input.shape[-1]
        return channels * channels / self.frames

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.frames
        return (b, self.frames, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class TAdaRouteConv1D(keras.layers.Conv1D):
    """A route-function conv over time on (batch, frames, channels): Keras Conv1D with
    'same' padding (k // 2 zeros each side, PyTorch Conv3d kernel (k, 1, 1), padding
    (k // 2, 0, 0)). kernel (k, C_in, C_out) = the PyTorch weight (C_out, C_in, k, 1, 1)
    squeezed and transposed (2, 1, 0). Counted by keras_tin.utils.flops per frame."""

    def __init__(self, filters, kernel_size=3, **kwargs):
        kwargs.setdefault("padding", "same")
        kwargs.setdefault("kernel_initializer", _msra())
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size[0] % 2 != 1 or self.strides != (1,) or self.padding != "same":
            raise ValueError(f"TAdaRouteConv1D is an odd-sized, stride-1, 'same'-padded conv. "
                             f"Received: kernel_size={kernel_size!r}, "
                             f"strides={kwargs.get('strides')!r}, "
                             f"padding={kwargs.get('padding')!r}")

    def macs_per_frame(self):
        return self.kernel_size[0] * self.input.shape[-1] * self.filters


@keras.saving.register_keras_serializable(package="keras_tin")
class TAdaCalibration(keras.layers.Layer):
    """x[n, t] * (1 + beta[n, t]): the calibration alpha = beta + 1 applied to the input
    channels of the following conv (the publisher's cal_dim='cin'), as a per-frame
    channel scaling of the input.

    Inputs: [x (batch * frames, H, W, C), beta (batch, frames, C)] (beta: the route
    function's last conv, without the + 1). Output: like x.
    """

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")

    def _check(self, x_shape, beta_shape):
        check_folded_input(self, tuple(x_shape), self.frames)
        if (len(beta_shape) != 3 or beta_shape[1] not in (None, self.frames)
                or beta_shape[-1] != x_shape[-1]):
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' needs beta of shape (batch, "
                f"{self.frames}, {x_shape[-1]}) for x of shape {tuple(x_shape)}. Received: "
                f"beta shape={tuple(beta_shape)}")

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name} takes [x, beta]. Received: input_shape="
                             f"{input_shape!r}")
        self._check(*input_shape)

    def call(self, inputs):
        x, beta = inputs
        self._check(x.shape, beta.shape)
        shape = ops.shape(x)
        alpha = ops.cast(beta, x.dtype) + 1.0
        y = _clips(x, self.frames) * alpha[:, :, None, None, :]
        return ops.reshape(y, shape)

    def macs_per_frame(self):
        shape = self.input[0].shape
        return shape[1] * shape[2] * shape[3]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalAveragePooling(keras.layers.Layer):
    """Average over `pool_size` neighbouring frames, stride 1, zero padding pool_size // 2
    counted in the average (PyTorch AvgPool3d((k, 1, 1), 1, (k // 2, 0, 0)) with its
    default count_include_pad=True: the border frames are divided by k too).

    Input and output: folded frames (batch * frames, H, W, C). No weights.
    """

    def __init__(self, frames, pool_size=3, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        self.pool_size = positive_int(pool_size, "pool_size")
        if self.pool_size % 2 != 1:
            raise ValueError(f"pool_size must be odd. Received: pool_size={pool_size!r}")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        shape = ops.shape(inputs)
        channels = inputs.shape[-1]
        # A depthwise conv over (batch, frames, H*W, C) with the constant kernel 1/k and
        # 'same' zero padding: the padded frames count in the average, as in PyTorch. One
        # op instead of k shifted slices (faster on CPU; a TFLite builtin).
        x = ops.reshape(inputs, (-1, self.frames, shape[1] * shape[2], shape[3]))
        kernel = ops.full((self.pool_size, 1, channels, 1), 1.0 / self.pool_size,
                          dtype=x.dtype)
        out = ops.depthwise_conv(x, kernel, strides=1, padding="same")
        return ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, pool_size=self.pool_size)
        return config


def _batch_norm(name, **kwargs):
    return keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=name, **kwargs)


def route_function(x, frames, name, ratio=ROUTE_RATIO):
    """beta (batch, frames, C) = the route function's output minus 1, on folded x."""
    channels = x.shape[-1]
    if channels is None or channels // ratio < 1:
        raise ValueError(f"The TAda route function of {name} reduces {channels} channels by "
                         f"{ratio}; it needs at least {ratio}. Received: input shape "
                         f"{tuple(x.shape)}")
    d = TAdaRouteInput(frames, name=f"{name}_tada_rf_g")(x)
    h = TAdaRouteConv1D(channels // ratio, ROUTE_KERNELS[0], use_bias=True,
                        name=f"{name}_tada_rf_a")(d)
    h = keras.layers.ReLU(name=f"{name}_tada_rf_relu")(_batch_norm(f"{name}_tada_rf_bn")(h))
    return TAdaRouteConv1D(channels, ROUTE_KERNELS[1], use_bias=False,
                           kernel_initializer="zeros", name=f"{name}_tada_rf_b")(h)


def tada_conv2d(x, beta, frames, filters, strides, name):
    """The temporally adaptive 3x3 conv: scale x's channels per frame by 1 + beta, then one
    shared bias-free 3x3 conv (stride `strides`, padding 1) named f"{name}_conv2"."""
    y = TAdaCalibration(frames, name=f"{name}_tada_scale")([x, beta])
    return TemporalConv2D(filters, 3, strides, padding=1, name=f"{name}_conv2")(y)


def build_tada2d(site):
    """The "conv2" replacement of a TAda2D block (see the module docstring): a callable on
    the branch (after conv1-bn1-relu) giving site.filters channels at site.strides,
    followed by a ReLU when site.relu (bottleneck; a basic block has none)."""
    frames, name = site.frames, site.name

    def apply(x):
        beta = route_function(x, frames, name)
        y = tada_conv2d(x, beta, frames, site.filters, site.strides, name)
        main = _batch_norm(f"{name}_bn2")(y)
        pooled = TemporalAveragePooling(frames, POOL_FRAMES, name=f"{name}_tada_pool")(y)
        pooled = _batch_norm(f"{name}_tada_pool_bn", gamma_initializer="zeros",
                             beta_initializer="zeros")(pooled)
        out = keras.layers.Add(name=f"{name}_tada_add")([main, pooled])
        return keras.layers.ReLU()(out) if site.relu else out

    return apply
