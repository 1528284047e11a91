"""TEA (Li et al., "TEA: Temporal Excitation and Aggregation for Action Recognition", CVPR
2020): its motion excitation (ME) and the temporal convs of its multiple temporal
aggregation (MTA), as parts of a Res2Net-50 block (keras_tin.applications.res2net_block).

Read from the official code (Phoenix1327/tea-action-recognition, ops/tea50_8f.py):

ME (MEModule), on the 4w channels after conv1-bn1-relu, r = 16 (placement "after_conv1"):
    b = BN(conv1x1(x))             C -> C // 16, no bias, no ReLU        (me.conv1, me.bn1)
    d[t] = DWConv3x3(b)[t+1] - b[t], d[T-1] = 0   (NextFrameDifference)   (me.conv2)
    y = sigmoid(BN(conv1x1(GAP(d)))) - 0.5         C // 16 -> C, no bias  (me.conv3, me.bn3)
    out = x + x * y
MTA temporal convs (ShiftModule), on each group before its 3x3 conv (placement
"res2net_group"): a channel-wise Conv1d over time, k = 3, padding 1, no bias
(TemporalDepthwiseConv1D, key shifts.i.conv.weight); groups 0-2 start as the identity
(mode 'fixed'), group 3 as a shift with n_div 2 (mode 'shift': the first w // 2 channels
take frame t+1, the next w // 2 frame t-1).

The published ShiftModule convolves 2 * (w // 2) channels, which is w for every width of
Res2Net-50 (26, 52, 104, 208); with an odd width (narrow test networks, base_filters not a
multiple of 64) the published code fails, and here the conv covers all w channels (the
extra channel starts as the identity).

Every part is a named top-level Keras layer ("<block>_me_conv1", "<block>_me_bn1",
"<block>_me_conv2", "<block>_me_conv3", "<block>_me_bn3", "<block>_shifts_<i>"), so the
checkpoint converter finds the weights by layer name. The ME convs start as in the official
Res2Net (kaiming normal, fan_out); the depthwise conv keeps NextFrameDifference's PyTorch
default initialisation.
"""

import keras
from keras import ops

from keras_tin.layers.frame_difference import NextFrameDifference
from keras_tin.layers.frame_difference import reduced_difference
from keras_tin.layers.temporal_depthwise import TemporalDepthwiseConv1D

REDUCTION = 16
SHIFT_FOLD_DIV = 2
KERNEL_SIZE = 3
# PyTorch BatchNorm2d defaults (eps 1e-5, momentum 0.1 = Keras momentum 0.9).
_BN_EPSILON, _BN_MOMENTUM = 1e-5, 0.9
# nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu'), as Res2Net.__init__ does.
def _kaiming_fan_out():
    """Res2Net's kaiming normal (fan_out), a new initializer per layer (a shared unseeded
    one draws its seed once, at import, and would repeat its values)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package="keras_tin")
class MotionExcitationGate(keras.layers.Layer):
    """TEA's excitation: [x, logits] -> x + x * (sigmoid(logits) - 0.5).

    logits (batch * frames, 1, 1, C) broadcast over x (batch * frames, H, W, C). No weights.
    """

    def call(self, inputs):
        x, logits = inputs
        return x + x * (ops.sigmoid(ops.cast(logits, x.dtype)) - 0.5)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _batch_norm(name):
    return keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=name)


def motion_excitation(frames, name, reduction=REDUCTION):
    """The ME module of block `name`: a callable x -> x + x * y (see the module docstring)."""

    def apply(x):
        channels = x.shape[-1]
        d = reduced_difference(x, frames, reduction, f"{name}_me_conv1", f"{name}_me_bn1",
                               f"{name}_me_conv2", _kaiming_fan_out(),
                               f"TEA's motion excitation in {name}")
        y = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_me_pool")(d)
        y = keras.layers.Conv2D(channels, 1, use_bias=False, kernel_initializer=_kaiming_fan_out(),
                                name=f"{name}_me_conv3")(y)
        y = _batch_norm(f"{name}_me_bn3")(y)
        return MotionExcitationGate(name=f"{name}_me_gate")([x, y])

    return apply


def temporal_conv(frames, name, group, groups):
    """The MTA temporal conv of one Res2Net group: identity-initialised, the last group
    shift-initialised (n_div 2)."""
    init = "tsm_shift" if group == groups - 1 else "identity"
    return TemporalDepthwiseConv1D(frames, KERNEL_SIZE, init=init, fold_div=SHIFT_FOLD_DIV,
                                   name=f"{name}_shifts_{group}")


def build(site):
    """ModuleSpec build for TEA (keras_tin.applications.temporal_modules): the ME at
    "after_conv1", a temporal conv at each "res2net_group"."""
    if site.placement == "after_conv1":
        return motion_excitation(site.frames, site.name)
    if site.placement == "res2net_group":
        return temporal_conv(site.frames, site.name, site.group, site.groups)
    raise ValueError(f"TEA sits at 'after_conv1' and 'res2net_group'. Received: "
                     f"placement={site.placement!r}")


LAYER_TYPES = (NextFrameDifference, TemporalDepthwiseConv1D, MotionExcitationGate)
