"""The Res2Net bottleneck (26w x 4s) as a block kind of TemporalResNet: block="res2net".

Res2Net (Gao et al., TPAMI 2021; Res2Net/Res2Net-PretrainedModels res2net.py Bottle2neck)
replaces the 3x3 conv of a ResNet bottleneck by a hierarchy over channel groups. With
width w = floor(planes * 26 / 64) (26, 52, 104, 208 in Res2Net-50) and scale 4:

    conv1 1x1 in -> 4w, BN, ReLU            [hook "after_conv1"]
    split into 4 groups x0..x3 of w channels
    for i in 0, 1, 2:
        s = x_i                 (i == 0, or in the first block of a stage: 'stage' type)
        s = s + x_i             (otherwise; s is the previous group's output)
                                [hook "res2net_group", site.group = i]
        s = ReLU(BN(conv3x3(s, stride)))    -> output i
    x3                          [hook "res2net_group", site.group = 3]
        first block of a stage: AvgPool2d(3, stride, padding 1) with PyTorch's
        count_include_pad=True, i.e. zero padding counted in the mean (a zero pad + 'valid'
        pooling here; Keras' 'same' pooling would leave the pad out of the mean)
        -> output 3 (other blocks: x3 unchanged)
    concat outputs, conv3 1x1 -> 4 * planes, BN   [hook "after_bn3"]
    + shortcut (1x1 conv stride + BN when the shape changes), ReLU   [hook "after_block"]

The first block of every stage, including layer1's (stride 1), is a 'stage' block: no
hierarchical adds, and the pooled last group. TEA (keras_tin.layers.tea) puts its motion
excitation at "after_conv1" and a temporal conv on every group at "res2net_group".

Layer names follow the PyTorch modules (layer1_0_conv1, layer1_0_bn1, layer1_0_convs_0,
layer1_0_bns_0, ..., layer1_0_conv3, layer1_0_bn3, layer1_0_downsample_conv / _bn), which
keras_tin.weights.layouts_res2net relies on.
"""

import keras

from keras_tin.applications import blocks

BASE_WIDTH = 26
SCALE = 4


def group_width(planes):
    """w = floor(planes * 26 / 64): the channels of one of the 4 groups."""
    return planes * BASE_WIDTH // 64


def res2net(x, planes, strides, name, hooks, fuse):
    """Res2Net-26w-4s bottleneck; output 4 * planes channels (see the module docstring)."""
    replacing = [spec.name for spec in hooks.specs if "conv2" in spec.placements]
    if replacing:
        raise ValueError(f"Block {name} is a Res2Net block, which has no single conv2 for "
                         f"temporal={replacing[0]!r} to replace; use block='bottleneck'.")
    width = group_width(planes)
    if width < 1:
        raise ValueError(f"A Res2Net block needs planes >= 3 (width floor(planes * 26 / 64) "
                         f">= 1). Received: planes={planes} in block {name}")
    stage_block = hooks.index == 0  # PyTorch stype='stage'
    skip = blocks.shortcut(x, planes * 4, strides, name)
    y, module = hooks.before_conv1(x)
    y = blocks.conv(width * SCALE, 1, 1, name + "_conv1", module, fuse)(y)
    y = keras.layers.ReLU()(blocks.batch_norm(name + "_bn1")(y))
    y = hooks.apply("after_conv1", y)
    groups = [y[..., i * width:(i + 1) * width] for i in range(SCALE)]
    outputs = []
    sp = None
    for i in range(SCALE - 1):
        sp = groups[i] if i == 0 or stage_block else keras.layers.Add(
            name=f"{name}_add_{i}")([sp, groups[i]])
        sp = hooks.apply("res2net_group", sp, group=i, groups=SCALE, strides=strides)
        sp = blocks.conv(width, 3, strides, f"{name}_convs_{i}")(sp)
        sp = keras.layers.ReLU()(blocks.batch_norm(f"{name}_bns_{i}")(sp))
        outputs.append(sp)
    last = hooks.apply("res2net_group", groups[-1], group=SCALE - 1, groups=SCALE,
                       strides=strides)
    if stage_block:
        last = keras.layers.ZeroPadding2D(1, name=f"{name}_pool_pad")(last)
        last = keras.layers.AveragePooling2D(3, strides, padding="valid",
                                             name=f"{name}_pool")(last)
    outputs.append(last)
    y = keras.layers.Concatenate(axis=-1, name=f"{name}_cat")(outputs)
    y = blocks.conv(planes * 4, 1, 1, name + "_conv3")(y)
    y = blocks.batch_norm(name + "_bn3")(y)
    y = hooks.apply("after_bn3", y)
    y = keras.layers.ReLU(name=name + "_out")(keras.layers.Add()([y, skip]))
    return hooks.apply("after_block", y)


blocks.register_block("res2net", res2net, expansion=4)
