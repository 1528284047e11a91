"""Where a temporal module sits in a ResNet, and the registry of temporal kinds.

`TemporalResNet` has one block builder with named hook points (PLACEMENTS). A temporal
module is a `ModuleSpec`: the placement it declares and a `build(site)` function that makes
its Keras layer(s) for one site. Adding a module is one layer file in keras_tin/layers/
plus one `register(ModuleSpec(...))` line here; the builder is never copied.

Placements (ResNet residual block: shortcut, conv1-bn1-relu, conv2-bn2-relu,
[conv3-bn3], add, relu):

    "before_conv1"  on the residual branch in front of conv1; the shortcut sees the
                    unchanged input (TIN, TSM). A layer with `delta` and
                    `changed_channels` and `fusable=True` is fused into conv1
                    (TemporalConv2D); otherwise it is applied to the branch input.
    "after_conv1"   inside the branch, after conv1-bn1-relu (TEA's ME, STM's CSTM+CMM).
    "conv2"         replaces the 3x3 conv, its BN and (bottleneck: site.relu) its ReLU
                    (TAda, STM): build(site) returns a callable branch -> what conv2 +
                    bn2 (+ ReLU when site.relu) would give: site.filters channels at
                    site.strides.
    "res2net_group" Res2Net blocks only: on each of the site.groups width-w groups, before
                    its 3x3 conv (the last group: before its pooling), site.group the
                    0-based group (TEA's temporal convs).
    "after_bn3"     after the branch's last BN, before the add (ECA).
    "after_block"   on the block output, after its ReLU (the non-local blocks).
    "after_stage"   on a stage's output (MotionSqueeze after res3).
    "head"          replaces global average pooling + frame consensus: build(site)
                    returns a callable (batch*frames, h, w, C) -> (batch, D) (TCP).

Block-level rules live on the spec: `module_every(stage_blocks)` (TSM's ResNet-101
n_round = 2), `stem_maxpool` and `stage_strides` (TAda2D: no max-pool, stride 2 in res2;
TCP: layer4 stride 1).

`build(site)` returns None (no module at this site), a Keras layer, or any callable
tensor -> tensor that creates named top-level layers (weights are found by top-level layer
name and variable name, so a module names its layers from `site.name`, e.g.
"layer2_0_nl_g").
"""

import dataclasses
from typing import Any
from typing import Callable
from typing import Optional

import keras

from keras_tin import layers as tin_layers
from keras_tin.layers import eca as eca_layers
from keras_tin.layers import motion_squeeze as ms_layers
from keras_tin.layers import stm as stm_layers
from keras_tin.layers import tada as tada_layers
from keras_tin.layers import tcp as tcp_layers
from keras_tin.layers import tea as tea_layers

PLACEMENTS = ("before_conv1", "after_conv1", "conv2", "res2net_group", "after_bn3",
              "after_block", "after_stage", "head")
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1


@dataclasses.dataclass(frozen=True)
class Site:
    """Where a module is being built.

    frames: frames per clip; channels: channels of the tensor at the placement; name: the
    block name ("layer2_0"; for "after_stage" the stage's "layer2"; "head" for the head);
    stage, index: 0-based stage and block (None where not applicable); filters, strides:
    the replaced conv's output channels and stride ("conv2", and "res2net_group" for the
    block's stride); options: builder options (implementation, non_local mode, ...);
    relu: ("conv2") whether the replaced conv2 is followed by a ReLU (bottleneck) or
    not (basic block); group, groups: ("res2net_group") the group and the group count;
    placement: the placement being built (for a module with several).
    """
    frames: int
    channels: Optional[int]
    name: str
    stage: Optional[int] = None
    index: Optional[int] = None
    filters: Optional[int] = None
    strides: int = 1
    options: dict = dataclasses.field(default_factory=dict)
    relu: bool = True
    group: Optional[int] = None
    groups: Optional[int] = None
    placement: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """A temporal module and where it sits.

    name: the registry name ("tin"), also `TemporalResNet(temporal=name)`.
    placement: one of PLACEMENTS, a tuple of them for a module with parts in several
        places (TEA: "after_conv1" and "res2net_group"; build(site) reads
        site.placement), or None (no module: TSN).
    build: build(site) -> None, a layer, or a callable tensor -> tensor.
    fusable: for "before_conv1": the layer has delta/changed_channels and may be fused
        into conv1 (TemporalConv2D(temporal_module=...)); the layer is then nested in
        conv1 and its variables belong to layer "<block>_conv1".
    module_every: stage_blocks -> n: the module sits in blocks 0, n, 2n, ... of each stage.
    stem_maxpool: False drops the stem's max-pool (TAda2D).
    stage_strides: stride of each stage's first block ((1, 2, 2, 2) for ResNet; TAda2D
        (2, 2, 2, 2), TCP (1, 2, 2, 1)).
    layer_types: the module's layer classes, for converters that find it in a model.
    init_variables: variable-name prefixes that an ImageNet backbone checkpoint leaves at
        their initialisation (TIN's "offset_", "weight_conv").
    description: one line for error messages and docs.
    block: the residual block kind the module needs at depth 50/101 (None: the depth's
        own; "res2net" for TEA).
    default_blocks: {depth: block kind} the kind is built from by default at a depth
        (another block= is allowed): TCP's ResNet-152 is the release's pre-activation one.
    depths: the ResNet depths the module is defined for (empty: all).
    """
    name: str
    placement: Optional[str]
    build: Callable[[Site], Any] = lambda site: None
    fusable: bool = False
    module_every: Callable[[tuple], int] = lambda stage_blocks: 1
    stem_maxpool: bool = True
    stage_strides: tuple = (1, 2, 2, 2)
    layer_types: tuple = ()
    init_variables: tuple = ()
    description: str = ""
    block: Optional[str] = None
    depths: tuple = ()
    default_blocks: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if any(p not in PLACEMENTS for p in self.placements):
            raise ValueError(f"placement must be None, one of {PLACEMENTS} or a tuple of "
                             f"them. Received: placement={self.placement!r} for module "
                             f"{self.name!r}")

    @property
    def placements(self):
        """The placements as a tuple (empty for no module)."""
        if self.placement is None:
            return ()
        return (self.placement,) if isinstance(self.placement, str) else tuple(self.placement)


_REGISTRY = {}


def register(spec, overwrite=False):
    """Adds a ModuleSpec under spec.name; returns it."""
    if not isinstance(spec, ModuleSpec):
        raise TypeError(f"register takes a ModuleSpec. Received: {spec!r}")
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"A temporal module named {spec.name!r} is already registered; pass "
                         f"overwrite=True to replace it.")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name):
    """Removes a registered module (for tests and experiments)."""
    _REGISTRY.pop(name, None)


def names():
    """The registered temporal kinds, in registration order."""
    return tuple(_REGISTRY)


def get(name):
    """The ModuleSpec of a temporal kind; a ValueError lists the registered kinds."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(f"temporal must be one of {names()}. Received: temporal={name!r}")


# --- the built-in kinds -------------------------------------------------------------------

def _build_tin(site):
    return tin_layers.TemporalInterlace(site.frames, shift_div=4,
                                        implementation=site.options.get("implementation",
                                                                        "auto"),
                                        name=site.name + "_tin")


def _build_tsm(site):
    return tin_layers.TemporalShift(site.frames, shift_div=8, name=site.name + "_tsm")


def _tsm_every(stage_blocks):
    """The published TSM shifts every other block when the third stage has 23+ blocks
    (ResNet-101): MIT make_temporal_shift n_round = 2, mmaction2 ResNetTSM."""
    return 2 if stage_blocks[2] >= 23 else 1


register(ModuleSpec("tin", "before_conv1", _build_tin, fusable=True,
                    layer_types=(tin_layers.TemporalInterlace,),
                    init_variables=("offset_", "weight_conv"),
                    description="Temporal Interlacing (TIN), before conv1 of every block"))
register(ModuleSpec("tsm", "before_conv1", _build_tsm, fusable=True, module_every=_tsm_every,
                    layer_types=(tin_layers.TemporalShift,),
                    description="Temporal Shift (TSM), before conv1 (every other block "
                                "on ResNet-101)"))
register(ModuleSpec("tsn", None, description="no temporal module (TSN)"))
register(ModuleSpec("tada2d", "conv2", tada_layers.build_tada2d, stem_maxpool=False,
                    stage_strides=(2, 2, 2, 2), layer_types=(tada_layers.TAdaCalibration,),
                    description="TAdaConv (TAda2D): temporally adaptive 3x3 conv in every block"))
register(ModuleSpec("tea", ("after_conv1", "res2net_group"), tea_layers.build,
                    layer_types=tea_layers.LAYER_TYPES, block="res2net", depths=(50,),
                    description="TEA: motion excitation after conv1 and temporal convs on "
                                "the Res2Net groups (Res2Net-50 blocks)"))
register(ModuleSpec("stm", "conv2", stm_layers.build, layer_types=stm_layers.LAYER_TYPES,
                    depths=(50, 101), description="STM: CSTM + CMM in place of every "
                                                  "bottleneck's 3x3 conv"))
# MSNet: TSM's shift in every block plus the MotionSqueeze module after layer2 (res3) only.
register(ModuleSpec("msnet", ("before_conv1", "after_stage"), ms_layers.build, fusable=True,
                    module_every=_tsm_every,
                    layer_types=(tin_layers.TemporalShift, ms_layers.MotionSqueezeFlow),
                    description="MSNet: TSM shift before conv1 of every block and the "
                                "MotionSqueeze flow module after res3 (layer2)"))
# TSN + the TCP head (TCPNet); any other kind takes the head with pooling="tcp" (TCP_HEAD).
register(ModuleSpec("tcp", "head", tcp_layers.build, stage_strides=(1, 2, 2, 1),
                    layer_types=tcp_layers.LAYER_TYPES, default_blocks={152: "preact"},
                    description="TSN with Temporal-attentive Covariance Pooling (TCP) in "
                                "place of average pooling; layer4 stride 1"))


# --- the TCP head as a pooling option of any kind: TemporalResNet(pooling="tcp") ---------

TCP_HEAD = ModuleSpec("tcp_head", "head", tcp_layers.build, layer_types=tcp_layers.LAYER_TYPES,
                      description="Temporal-attentive Covariance Pooling head (pooling='tcp')")


# --- non-local blocks: a module at "after_block", chosen per block by the builder ---------

def build_non_local(site):
    """mmcv NonLocal3d (sub_sample=True, use_scale=False, BN3d) on a block output;
    site.options["non_local"] is the mode."""
    frames, name, mode = site.frames, site.name, site.options["non_local"]

    def apply(x):
        channels = x.shape[-1]
        inter = max(channels // 2, 1)
        if any(size is not None and size < 2 for size in x.shape[1:3]):
            raise ValueError(f"The non-local block after {name} max-pools its keys 2x2 but "
                             f"the feature map there is {tuple(x.shape[1:3])}; use a larger "
                             f"input or other non_local_blocks.")

        def embed(layer):
            return keras.layers.Conv2D(
                inter, 1, use_bias=True, name=f"{name}_nl_{layer}",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                bias_initializer="zeros")(x)

        g = keras.layers.MaxPooling2D(2, name=f"{name}_nl_g_pool")(embed("g"))
        if mode == "gaussian":
            theta, phi = x, keras.layers.MaxPooling2D(2, name=f"{name}_nl_phi_pool")(x)
        else:
            theta = embed("theta")
            phi = keras.layers.MaxPooling2D(2, name=f"{name}_nl_phi_pool")(embed("phi"))
        y = tin_layers.NonLocalAttention(frames, mode, name=f"{name}_nl_attention")(
            [theta, phi, g])
        y = keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_nl_conv_out")(y)
        y = keras.layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                            gamma_initializer="zeros", name=f"{name}_nl_bn")(y)
        return keras.layers.Add(name=f"{name}_nl_out")([x, y])

    return apply


NON_LOCAL = ModuleSpec("non_local", "after_block", build_non_local,
                       layer_types=(tin_layers.NonLocalAttention,),
                       description="non-local blocks (mmaction2 NL3DWrapper) after chosen "
                                   "blocks")


# --- ECA channel attention: an add-on at "after_bn3" in every block, chosen by the builder

def build_eca(site):
    """ECA (keras_tin.layers.eca) after the branch's last BN; the kernel size is
    site.options["eca_kernel_sizes"][site.stage]."""
    return eca_layers.ECA(site.options["eca_kernel_sizes"][site.stage], name=site.name + "_eca")


ECA = ModuleSpec("eca", "after_bn3", build_eca, layer_types=(eca_layers.ECA,),
                 description="ECA channel attention after the last BN of every block")
