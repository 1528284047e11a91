"""Residual blocks of the temporal ResNets, with the temporal-module hook points.

A block function has the signature `block_fn(x, planes, strides, name, hooks, fuse)` and
calls `hooks` (a `Hooks`) at the placements of keras_tin.applications.temporal_modules.
PLACEMENTS. The registered kinds (BLOCKS): "basic" (ResNet-18/34), "bottleneck"
(ResNet-50/101, torchvision v1.5: stride on the 3x3 conv) and, registered by
res2net_block.py, "res2net" (Res2Net-26w-4s bottlenecks, TEA). A new block kind is one
file that calls `register_block`.

Layer names follow the PyTorch modules ("layer2_0_conv1", "layer2_0_bn1",
"layer2_0_downsample_conv"), which the checkpoint converters rely on.
"""

import keras

from keras_tin import layers as tin_layers
from keras_tin.applications.temporal_modules import BN_EPSILON
from keras_tin.applications.temporal_modules import BN_MOMENTUM
from keras_tin.applications.temporal_modules import Site


def batch_norm(name, **kwargs):
    """BatchNormalization with PyTorch's eps 1e-5 (unless `epsilon` is given) and momentum
    0.1."""
    kwargs.setdefault("epsilon", BN_EPSILON)
    return keras.layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, name=name, **kwargs)


def conv(filters, kernel_size, strides, name, module=None, fuse=True):
    """A bias-free 'same'-padded conv (PyTorch padding k // 2); `module` is a fusable
    "before_conv1" temporal module computed through its delta into this conv."""
    return tin_layers.TemporalConv2D(filters, kernel_size, strides, padding=kernel_size // 2,
                                     temporal_module=module, fuse=fuse, name=name)


def shortcut(x, filters, strides, name):
    """Identity, or 1x1 conv (stride `strides`) + BN when the shape changes."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    x = conv(filters, 1, strides, name + "_downsample_conv")(x)
    return batch_norm(name + "_downsample_bn")(x)


class Hooks:
    """The modules (ModuleSpecs) active in one residual block, and its Site fields."""

    def __init__(self, specs, frames, name, stage, index, options):
        self.specs, self.frames, self.name = specs, frames, name
        self.stage, self.index, self.options = stage, index, options

    def build(self, placement, channels, **site):
        """[(spec, built module)] for the placement, in spec order; None builds skipped."""
        out = []
        for spec in self.specs:
            if placement in spec.placements:
                module = spec.build(Site(self.frames, channels, self.name, self.stage,
                                         self.index, options=self.options,
                                         placement=placement, **site))
                if module is not None:
                    out.append((spec, module))
        return out

    def apply(self, placement, x, **site):
        for _, module in self.build(placement, x.shape[-1], **site):
            x = module(x)
        return x

    def before_conv1(self, x):
        """(branch input, the module to fuse into conv1 or None): the last fusable
        "before_conv1" module is fused, any others are applied to the branch in order."""
        built = self.build("before_conv1", x.shape[-1])
        fused = built.pop()[1] if built and built[-1][0].fusable else None
        for _, module in built:
            x = module(x)
        return x, fused

    def conv2(self, x, filters, strides, relu):
        """The "conv2" replacement, or None for the plain conv2: a callable on the branch
        that returns what conv2 + bn2 (+ ReLU when `relu`) would."""
        built = self.build("conv2", x.shape[-1], filters=filters, strides=strides, relu=relu)
        if len(built) > 1:
            raise ValueError(f"Block {self.name}: more than one module replaces conv2: "
                             f"{[spec.name for spec, _ in built]}")
        return built[0][1] if built else None


def bottleneck(x, planes, strides, name, hooks, fuse):
    """torchvision Bottleneck (v1.5): 1x1 -> 3x3 (stride) -> 1x1 (4 * planes)."""
    skip = shortcut(x, planes * 4, strides, name)
    y, module = hooks.before_conv1(x)
    y = conv(planes, 1, 1, name + "_conv1", module, fuse)(y)
    y = keras.layers.ReLU()(batch_norm(name + "_bn1")(y))
    y = hooks.apply("after_conv1", y)
    conv2 = hooks.conv2(y, planes, strides, relu=True)
    if conv2 is None:
        y = conv(planes, 3, strides, name + "_conv2")(y)
        y = keras.layers.ReLU()(batch_norm(name + "_bn2")(y))
    else:
        y = conv2(y)
    y = conv(planes * 4, 1, 1, name + "_conv3")(y)
    y = batch_norm(name + "_bn3")(y)
    y = hooks.apply("after_bn3", y)
    y = keras.layers.ReLU(name=name + "_out")(keras.layers.Add()([y, skip]))
    return hooks.apply("after_block", y)


def basic(x, planes, strides, name, hooks, fuse):
    """torchvision BasicBlock: 3x3 (stride) -> 3x3."""
    skip = shortcut(x, planes, strides, name)
    y, module = hooks.before_conv1(x)
    y = conv(planes, 3, strides, name + "_conv1", module, fuse)(y)
    y = keras.layers.ReLU()(batch_norm(name + "_bn1")(y))
    y = hooks.apply("after_conv1", y)
    conv2 = hooks.conv2(y, planes, 1, relu=False)
    if conv2 is None:
        y = conv(planes, 3, 1, name + "_conv2")(y)
        y = batch_norm(name + "_bn2")(y)
    else:
        y = conv2(y)
    y = hooks.apply("after_bn3", y)  # the branch's last BN (bn2 in a basic block)
    y = keras.layers.ReLU(name=name + "_out")(keras.layers.Add()([y, skip]))
    return hooks.apply("after_block", y)


BLOCKS = {"basic": basic, "bottleneck": bottleneck}
# Output channels of a stage's blocks per planes (64, 128, 256, 512 for the stages).
EXPANSION = {"basic": 1, "bottleneck": 4}
# Pre-activation block kinds -> the BN epsilon of their network: TemporalResNet then adds
# an input BN "bn_data" and a final "bn2" + ReLU after the last stage (preact_block.py).
PREACTIVATION = {}


def register_block(kind, block_fn, expansion, preactivation=None):
    """Adds a block kind: block_fn(x, planes, strides, name, hooks, fuse) -> y with
    `expansion * planes` channels. preactivation: None, or the BN epsilon of a
    pre-activation network built from these blocks. Returns block_fn."""
    if kind in BLOCKS and BLOCKS[kind] is not block_fn:
        raise ValueError(f"A block kind named {kind!r} is already registered.")
    BLOCKS[kind] = block_fn
    EXPANSION[kind] = expansion
    if preactivation is not None:
        PREACTIVATION[kind] = preactivation
    return block_fn


def get_block(kind):
    if kind not in BLOCKS:
        raise ValueError(f"block must be one of {tuple(BLOCKS)}. Received: block={kind!r}")
    return BLOCKS[kind]
