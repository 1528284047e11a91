"""The pre-activation bottleneck as a block kind of TemporalResNet: block="preact".

The ResNet-152 of the TCPNet release (ZilinGao/Temporal-attentive-Covariance-Pooling-
Networks-for-Video-Recognition, ops/torchvision/preact_resnet.py Bottleneck_preact and
ResNet; its ImageNet-11K/1K weights come from an MXNet pre-activation ResNet) is a
pre-activation network ("Identity Mappings in Deep Residual Networks", He et al. 2016):

    block:  pre = ReLU(bn1(x))                       (BN over the block's input channels)
            shortcut = x, or downsample_conv(pre)    (1x1 conv with the stride, NO BN)
            y = conv1(pre)                           1x1 -> planes    [hook "before_conv1"]
            y = conv2(ReLU(bn2(y)))                  3x3, stride on this conv (v1.5)
            y = conv3(ReLU(bn3(y)))                  1x1 -> 4 * planes
            out = y + shortcut                       no ReLU after the add [hook "after_block"]
    network: bn_data (BN on the normalised RGB input) -> conv1 -> bn1 -> ReLU -> max-pool
            -> stages -> bn2 -> ReLU (the final pre-activation) -> pooling / head

Every BN of this network has eps 2e-5 (the MXNet models' value). TemporalResNet adds
bn_data and the final bn2 for a block kind registered with `preactivation=True`. Layer
names follow the PyTorch modules (layer1_0_bn1, layer1_0_conv1, ..., layer1_0_downsample_conv;
bn_data, conv1, bn1, bn2), which keras_tin.weights.layouts_tcp relies on.

Temporal modules: a "before_conv1" module (TSM, TIN) acts on the pre-activated branch
input; "after_block" modules on the block output. Modules at the other placements (which
assume the post-activation block's BNs) are refused.
"""

import keras

from keras_tin.applications import blocks

BN_EPSILON = 2e-5
_SUPPORTED = ("before_conv1", "after_block", "after_stage", "head")


def preact_bottleneck(x, planes, strides, name, hooks, fuse):
    """Pre-activation bottleneck (Bottleneck_preact): see the module docstring."""
    for spec in hooks.specs:
        other = [p for p in spec.placements if p not in _SUPPORTED]
        if other:
            raise ValueError(f"block='preact' takes temporal modules at {_SUPPORTED}; "
                             f"{spec.name!r} sits at {other}.")
    pre = keras.layers.ReLU()(blocks.batch_norm(name + "_bn1", epsilon=BN_EPSILON)(x))
    if strides == 1 and x.shape[-1] == planes * 4:
        skip = x
    else:
        skip = blocks.conv(planes * 4, 1, strides, name + "_downsample_conv")(pre)
    y, module = hooks.before_conv1(pre)
    y = blocks.conv(planes, 1, 1, name + "_conv1", module, fuse)(y)
    y = keras.layers.ReLU()(blocks.batch_norm(name + "_bn2", epsilon=BN_EPSILON)(y))
    y = blocks.conv(planes, 3, strides, name + "_conv2")(y)
    y = keras.layers.ReLU()(blocks.batch_norm(name + "_bn3", epsilon=BN_EPSILON)(y))
    y = blocks.conv(planes * 4, 1, 1, name + "_conv3")(y)
    y = keras.layers.Add(name=name + "_out")([y, skip])
    return hooks.apply("after_block", y)


blocks.register_block("preact", preact_bottleneck, 4, preactivation=BN_EPSILON)
