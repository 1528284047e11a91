"""STM (Jiang et al., "STM: SpatioTemporal and Motion Encoding for Action Recognition",
ICCV 2019, arXiv 1908.02486): the STM block's channel-wise spatiotemporal module (CSTM) and
channel-wise motion module (CMM), as the "conv2" part of a ResNet bottleneck.

No official code was released. This follows the first author's STM.py / CMM.py ("@Author :
Boyuan Jiang", 19-2-25; hosting repository not identified, see /work/shared/ZOO_SPEC.md
section 4): in every bottleneck, on the branch x after conv1-bn1-relu (C = planes channels),

    CSTM:  s = channel-wise Conv1d over time (k 3, padding 1, groups C, no bias) of x,
               initialised as a shift: channels [0, C/4) take frame t-1, the last C/4
               frame t+1, the rest frame t           (module `shift`, weight (C, 1, 3))
           y = ReLU(bn2(conv2(s)))                    (3x3, the block's stride)
    CMM:   b = stage_bn(stage_conv(x))                (1x1 C -> C/16, no bias; BN, no ReLU)
           d[t] = DWConv3x3(b)[t+1] - b[t], d[T-1] = 0  (mb.shift: depthwise 3x3, no bias)
           m = conv1x1(d)                             (1x1 C/16 -> C, no bias, no BN)
           m = MaxPool2d(2)(m) in a block of stride 2 (kernel 2, stride 2, no padding)
    out = y + m, which goes on to conv3 + bn3 + the residual add + ReLU.

The parts are the shared TemporalDepthwiseConv1D (init "stm_shift", fold_div 4) and
NextFrameDifference layers, and named top-level Keras layers, called after the publisher's
modules so the checkpoint converter (keras_tin/weights/convert_stm.py) finds the weights
by layer name:

    layer2_0_shift            TemporalDepthwiseConv1D  (shift.weight (C, 1, 3))
    layer2_0_conv2, _bn2      TemporalConv2D, BatchNormalization (the ResNet's own names)
    layer2_0_mb_stage_conv    Conv2D 1x1, no bias    (mb.stage_conv.weight)
    layer2_0_mb_stage_bn      BatchNormalization     (mb.stage_bn.*)
    layer2_0_mb_shift         NextFrameDifference    (mb.shift.weight (C/16, 1, 3, 3))
    layer2_0_mb_conv1x1       Conv2D 1x1, no bias    (mb.conv1x1.weight)
    layer2_0_mb_pool          MaxPooling2D 2x2 (blocks of stride 2 only)
    layer2_0_stm_add          Add

The CMM's convs start as PyTorch's default Conv2d initialisation (uniform +-1/sqrt(fan_in);
the author's code leaves its init loop commented out), the CSTM conv as the shift above.

The published code defines STM on bottlenecks only (ResNet-50/101/152). Its init slices
(`w[:C//4]`, `w[C//4:C//4+C//2]`, `w[-C//4:]`, the last being -ceil(C/4) in Python) differ
from the pattern above only when C is not a multiple of 4 (the last ceil(C/4) channels read
t+1, and with C % 4 == 3 one channel starts at zero); every ResNet width that is a multiple
of 16 gives the same kernel. Its stride-2 blocks fail on odd feature maps (the 2x2 max-pool
rounds down, the 3x3 conv up): here such a model is refused when it is built.
"""

import keras

from keras_tin.layers.frame_difference import NextFrameDifference
from keras_tin.layers.frame_difference import reduced_difference
from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.layers.temporal_depthwise import TemporalDepthwiseConv1D

REDUCTION = 16  # CMM's reduce_time
FOLD_DIV = 4  # CSTM: C/4 channels from t-1, C/4 from t+1
KERNEL_SIZE = 3
_BN_EPSILON, _BN_MOMENTUM = 1e-5, 0.9  # PyTorch BatchNorm2d defaults (momentum 0.1)
# PyTorch's default Conv2d init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), +).
def _torch_default():
    """PyTorch's default conv init, a new initializer per layer: a shared unseeded
    initializer object draws its seed once, at import, and would repeat its values."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def _batch_norm(name):
    return keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=name)


def channel_motion(x, frames, filters, strides, name, reduction=REDUCTION):
    """CMM of block `name` on the branch x: (batch * frames, H, W, C) -> `filters` channels
    at `strides` (see the module docstring)."""
    d = reduced_difference(x, frames, reduction, f"{name}_mb_stage_conv",
                           f"{name}_mb_stage_bn", f"{name}_mb_shift", _torch_default(),
                           f"STM's motion module (CMM) in {name}")
    m = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=_torch_default(),
                            name=f"{name}_mb_conv1x1")(d)
    if strides == 2:
        odd = [size for size in x.shape[1:3] if size is not None and size % 2]
        if odd:
            raise ValueError(
                f"STM block {name} has stride 2: its motion module max-pools 2x2 (rounding "
                f"down) while its 3x3 conv rounds up, so the feature map there must have even "
                f"sides (the published code fails too). Received: feature map "
                f"{tuple(x.shape[1:3])}; use an input size that is a multiple of 32.")
        m = keras.layers.MaxPooling2D(2, 2, padding="valid", name=f"{name}_mb_pool")(m)
    return m


def channel_spatiotemporal(x, frames, filters, strides, name, relu=True):
    """CSTM of block `name`: shift-initialised channel-wise temporal conv, then the block's
    3x3 conv (stride), BN and (bottleneck) ReLU."""
    s = TemporalDepthwiseConv1D(frames, KERNEL_SIZE, init="stm_shift", fold_div=FOLD_DIV,
                                name=f"{name}_shift")(x)
    y = TemporalConv2D(filters, 3, strides, padding=1, name=f"{name}_conv2")(s)
    y = _batch_norm(f"{name}_bn2")(y)
    return keras.layers.ReLU(name=f"{name}_relu2")(y) if relu else y


def build(site):
    """ModuleSpec build for STM (keras_tin.applications.temporal_modules, placement
    "conv2"): a callable branch -> CSTM(branch) + CMM(branch), site.filters channels at
    site.strides."""
    if site.placement not in (None, "conv2"):
        raise ValueError(f"STM replaces conv2. Received: placement={site.placement!r}")
    if not site.relu:
        raise ValueError(f"STM is defined on bottleneck blocks (ResNet-50/101), whose 3x3 "
                         f"conv is followed by a ReLU; block {site.name} has none (a basic "
                         f"block).")
    if site.strides not in (1, 2):
        raise ValueError(f"STM blocks have stride 1 or 2. Received: strides={site.strides!r} "
                         f"in block {site.name}")
    frames, name, filters, strides = site.frames, site.name, site.filters, site.strides

    def apply(x):
        motion = channel_motion(x, frames, filters, strides, name)
        spatiotemporal = channel_spatiotemporal(x, frames, filters, strides, name)
        return keras.layers.Add(name=f"{name}_stm_add")([spatiotemporal, motion])

    return apply


LAYER_TYPES = (TemporalDepthwiseConv1D, NextFrameDifference)
