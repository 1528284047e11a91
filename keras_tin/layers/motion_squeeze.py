"""MotionSqueeze (Kwon, Kim, Kwak, Cho, "MotionSqueeze: Neural Motion Feature Learning for
Video Understanding", ECCV 2020; arunos728/MotionSqueeze resnet_TSM.py), the MSNet module.

On a stage output x (batch*T, H, W, C), frames folded into the batch clip-major:

    f      = ReLU(BN(conv1x1(x)))                          C -> 64, no bias (chnl_reduction)
    pairs  : f1 = frames 0..T-2, f2 = frames 1..T-1        (batch*(T-1) pairs)
    n(f)   = f / sqrt(sum_c f**2 + 1e-6)                   (eps INSIDE the sqrt)
    corr   = ReLU(correlation(n(f1), n(f2), d=7))          (225 displacements, ph*15 + pw,
                                                            keras_tin.ops.correlation)
    conf   = max over the 225 of corr                      (before the Gaussian)
    g      = exp(-((pw - ix)**2 + (ph - iy)**2) / (2 * 5**2)), (iy, ix) = argmax of corr
                                                           (the argmax is not differentiated)
    p      = softmax over the 225 of 100 * corr * g
    flow   = (sum p * (pw - 7), sum p * (ph - 7)) / 7      (x then y, in [-1, 1])
    maps   = (flow_x, flow_y, conf), the last pair repeated -> batch*T frames of 3 channels
    y      = 4 x [DW conv (7x7, then 3x3) + BN + ReLU + 1x1 conv + BN + ReLU],
             channels 3 -> 16 -> 32 -> 64 -> C                  (Flow_refinement)
    out    = x + y                                              (no ReLU after the add)

Where the argmax has ties (all 225 correlations ReLU'd to zero, or equal maxima) the
first index wins here; with all zeros the Gaussian does not matter (softmax of zeros).

Layers (top-level functional layers named from the stage, e.g. "layer2"):
    layer2_ms_reduce, layer2_ms_reduce_bn        chnl_reduction.0 / .1
    layer2_ms_flow                               MotionSqueezeFlow (no weights)
    layer2_ms_refine{i}_dw, _dw_bn, _pw, _pw_bn  flow_refinement.conv{i}.0 / .1 / .3 / .4
    layer2_ms_out                                the add
`flow_maps_model(model)` gives the (flow_x, flow_y, confidence) maps of a built model.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int

MAX_DISPLACEMENT = 7  # patch 15
SIGMA = 5.0  # apply_gaussian_kernel(sigma=5)
TEMPERATURE = 100.0  # main_something.py: temperature = 100
EPSILON = 1e-6  # L2normalize eps, inside the sqrt
REDUCED_CHANNELS = 64  # chnl_reduction output
REFINE_WIDTHS = (16, 32, 64)  # Flow_refinement c1, c2, c3 (the last stage goes back to C)
REFINE_KERNELS = (7, 3, 3, 3)
STAGE = 1  # 0-based stage after which the module sits (layer2, res3)
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1


def l2_normalize(x, epsilon=EPSILON):
    """x / sqrt(sum over channels of x**2 + epsilon) (MotionSqueeze's L2normalize)."""
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + epsilon)


def soft_argmax_flow(corr, max_displacement=MAX_DISPLACEMENT, sigma=SIGMA,
                     temperature=TEMPERATURE):
    """(flow_x, flow_y, confidence), each (..., H, W), from a ReLU'd correlation
    (..., H, W, (2d+1)**2) indexed ph * (2d+1) + pw (match_to_flow_soft)."""
    size = 2 * max_displacement + 1
    if corr.shape[-1] is not None and corr.shape[-1] != size * size:
        raise ValueError(f"soft_argmax_flow expects {size * size} displacements on the last "
                         f"axis for max_displacement={max_displacement}. Received: "
                         f"corr.shape={tuple(corr.shape)}")
    peak = ops.max(corr, axis=-1, keepdims=True)
    confidence = peak[..., 0]
    # The argmax (first index on ties) as the smallest index reaching the maximum, and its
    # row / column, in float arithmetic (exact for these small integers): builtin TFLite
    # ops only (Keras's argmax adds a sign-bit test, tf.BitwiseAnd, that TFLite lacks).
    count = size * size
    grid = ops.cast(ops.convert_to_tensor(np.arange(count, dtype="float32")), corr.dtype)
    index = ops.min(ops.where(corr >= peak, grid, float(count)), axis=-1, keepdims=True)
    index = ops.stop_gradient(index)
    iy = ops.floor(index / size)
    ix = index - iy * size
    ph = ops.floor(grid / size)
    pw = grid - ph * size
    gauss = ops.exp(-(ops.square(pw - ix) + ops.square(ph - iy)) / (2.0 * sigma * sigma))
    p = ops.softmax(temperature * corr * ops.stop_gradient(gauss), axis=-1)
    flow_x = ops.sum(p * (pw - max_displacement), axis=-1) / max_displacement
    flow_y = ops.sum(p * (ph - max_displacement), axis=-1) / max_displacement
    return flow_x, flow_y, confidence


@keras.saving.register_keras_serializable(package="keras_tin")
class MotionSqueezeFlow(keras.layers.Layer):
    """Flow and confidence between consecutive frames of reduced features.

    Input (batch*frames, H, W, C) folded clip-major; output (batch*frames, H, W, 3) with
    channels (flow_x, flow_y, confidence) of pair (t, t+1) at frame t and the last pair
    repeated at frame T-1 (return_pairs=True: the batch*(frames-1) pairs only). See the
    module docstring for the computation.

    Args:
        frames: frames per clip (at least 2).
        max_displacement: d of the (2d+1)**2 correlation window (7).
        sigma: the Gaussian around the argmax (5).
        temperature: softmax temperature (100).
        epsilon: inside the sqrt of the L2 normalisation (1e-6).
        implementation: the correlation's ("auto", "portable", "custom_op"; see
            keras_tin.ops.dispatch.correlation_fn).
        return_pairs: output the frames-1 pairs per clip instead of frames maps.
    """

    def __init__(self, frames, max_displacement=MAX_DISPLACEMENT, sigma=SIGMA,
                 temperature=TEMPERATURE, epsilon=EPSILON, implementation="auto",
                 return_pairs=False, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        if self.frames < 2:
            raise ValueError(f"MotionSqueeze compares consecutive frames and needs frames >= 2. "
                             f"Received: frames={frames!r}")
        if isinstance(max_displacement, bool) or not isinstance(max_displacement, int) \
                or max_displacement < 1:
            raise ValueError(f"max_displacement must be a positive int. Received: "
                             f"max_displacement={max_displacement!r}")
        for label, value in (("sigma", sigma), ("temperature", temperature),
                             ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{label} must be a positive number. Received: "
                                 f"{label}={value!r}")
        from keras_tin.ops.dispatch import check_implementation
        check_implementation(implementation)
        self.max_displacement = max_displacement
        self.sigma, self.temperature, self.epsilon = float(sigma), float(temperature), \
            float(epsilon)
        self.implementation = implementation
        self.return_pairs = bool(return_pairs)

    def pair_maps(self, inputs):
        """(batch*(frames-1), H, W, 3): (flow_x, flow_y, confidence) of each pair."""
        from keras_tin.ops.dispatch import correlation_fn

        check_folded_input(self, tuple(inputs.shape), self.frames)
        shape = ops.shape(inputs)
        h, w, c = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        h = shape[1] if h is None else h
        w = shape[2] if w is None else w
        clips = ops.reshape(inputs, (-1, self.frames, h, w, c))
        pre = ops.reshape(clips[:, :-1], (-1, h, w, c))
        post = ops.reshape(clips[:, 1:], (-1, h, w, c))
        corr = correlation_fn(self.implementation)(
            l2_normalize(pre, self.epsilon), l2_normalize(post, self.epsilon),
            self.max_displacement)
        corr = ops.relu(corr)
        flow_x, flow_y, confidence = soft_argmax_flow(corr, self.max_displacement, self.sigma,
                                                      self.temperature)
        return ops.stack([flow_x, flow_y, confidence], axis=-1)

    def call(self, inputs):
        maps = self.pair_maps(inputs)
        if self.return_pairs:
            return maps
        h, w = ops.shape(maps)[1], ops.shape(maps)[2]
        h = inputs.shape[1] or h
        w = inputs.shape[2] or w
        maps = ops.reshape(maps, (-1, self.frames - 1, h, w, 3))
        maps = ops.concatenate([maps, maps[:, -1:]], axis=1)  # the last pair twice
        return ops.reshape(maps, (-1, h, w, 3))

    def compute_output_shape(self, input_shape):
        b = input_shape[0]
        if self.return_pairs and b is not None:
            b = b // self.frames * (self.frames - 1)
        return (b, input_shape[1], input_shape[2], 3)

    def macs_per_frame(self):
        """The correlation's multiply-adds ((2d+1)**2 * C per position, T-1 pairs of T
        frames); normalisation and soft-argmax are elementwise (not counted)."""
        _, h, w, c = self.input.shape
        size = 2 * self.max_displacement + 1
        return size * size * c * h * w * (self.frames - 1) / self.frames

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, max_displacement=self.max_displacement,
                      sigma=self.sigma, temperature=self.temperature, epsilon=self.epsilon,
                      implementation=self.implementation, return_pairs=self.return_pairs)
        return config


def _fan_out(fan_out):
    """PyTorch kaiming_normal_(mode='fan_out', nonlinearity='relu') for a conv whose
    PyTorch fan_out (out channels * kh * kw, groups not divided out) is `fan_out`."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan_out))


def _bn(name):
    return keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM,
                                           epsilon=_BN_EPSILON, name=name)


def motion_squeeze(x, frames, name, implementation="auto"):
    """x + Flow_refinement(MotionSqueezeFlow(chnl_reduction(x))) on a stage output x
    (batch*frames, H, W, C): the MS module, as top-level layers named `name`_ms_*."""
    channels = x.shape[-1]
    if channels is None:
        raise ValueError(f"MotionSqueeze after {name} needs a known channel count. Received: "
                         f"shape {tuple(x.shape)}")
    y = keras.layers.Conv2D(REDUCED_CHANNELS, 1, use_bias=False, name=f"{name}_ms_reduce",
                            kernel_initializer=_fan_out(REDUCED_CHANNELS))(x)
    y = keras.layers.ReLU()(_bn(f"{name}_ms_reduce_bn")(y))
    y = MotionSqueezeFlow(frames, implementation=implementation, name=f"{name}_ms_flow")(y)
    widths = (3,) + REFINE_WIDTHS + (channels,)
    for i, k in enumerate(REFINE_KERNELS):
        stage = f"{name}_ms_refine{i + 1}"
        y = keras.layers.DepthwiseConv2D(k, padding="same", use_bias=False,
                                         depthwise_initializer=_fan_out(widths[i] * k * k),
                                         name=stage + "_dw")(y)
        y = keras.layers.ReLU()(_bn(stage + "_dw_bn")(y))
        y = keras.layers.Conv2D(widths[i + 1], 1, use_bias=False, name=stage + "_pw",
                                kernel_initializer=_fan_out(widths[i + 1]))(y)
        y = keras.layers.ReLU()(_bn(stage + "_pw_bn")(y))
    return keras.layers.Add(name=f"{name}_ms_out")([x, y])


def build(site):
    """The "msnet" temporal kind (keras_tin.applications.temporal_modules): TSM's shift
    before conv1 of every block and the MS module after the second stage (res3)."""
    from keras_tin.layers.temporal_shift import TemporalShift

    if site.placement == "before_conv1":
        return TemporalShift(site.frames, shift_div=8, name=site.name + "_tsm")
    if site.placement == "after_stage" and site.stage == STAGE:
        implementation = site.options.get("implementation", "auto")
        return lambda x: motion_squeeze(x, site.frames, site.name, implementation)
    return None


def flow_layers(model):
    """The MotionSqueezeFlow layers of a model (one in MSNet)."""
    return [layer for layer in model.layers if isinstance(layer, MotionSqueezeFlow)]


def flow_maps_model(model):
    """keras.Model: clips -> (batch, frames - 1, H, W, 3), (flow_x, flow_y, confidence) of
    each consecutive frame pair at the MS module's resolution (stride 8)."""
    found = flow_layers(model)
    if not found:
        raise ValueError(f"Model '{model.name}' has no MotionSqueeze module; build an MSNet "
                         f"(MSNetResNet50 / MSNetResNet18).")
    layer = found[0]
    maps = layer.output  # (batch*frames, h, w, 3), the last pair repeated
    frames = layer.frames
    h, w = maps.shape[1], maps.shape[2]
    pairs = keras.layers.Lambda(
        lambda t: ops.reshape(t, (-1, frames, h, w, 3))[:, :-1],
        output_shape=(frames - 1, h, w, 3), name="ms_maps_pairs")(maps)
    return keras.Model(model.input, pairs, name=model.name + "_motion_maps")
