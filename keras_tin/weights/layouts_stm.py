"""Key layout of STM-ResNet checkpoints (the first author's STM.py / CMM.py, see
/work/shared/ZOO_SPEC.md section 4), mapped onto keras_tin's STM blocks
(keras_tin/layers/stm.py: STMResNet50, TemporalResNet(temporal="stm")).

No STM weights were published. The author's code (class STM, a torchvision-style ResNet with
its own classifier `fc`, applied per frame, wrapped in a TSN model `base_model` and trained
under DataParallel) saves {"state_dict": ...} with, per bottleneck:

    module.base_model.layerL.b.{conv1, bn1, conv2, bn2, conv3, bn3, downsample.0,
        downsample.1}.*                                   the ResNet's own modules
    module.base_model.layerL.b.shift.weight (C, 1, 3)        CSTM temporal conv
    module.base_model.layerL.b.mb.stage_conv.weight (C/16, C, 1, 1)   CMM reduce
    module.base_model.layerL.b.mb.stage_bn.*                 CMM BN
    module.base_model.layerL.b.mb.shift.weight (C/16, 1, 3, 3)        CMM depthwise 3x3
    module.base_model.layerL.b.mb.conv1x1.weight (C, C/16, 1, 1)      CMM expand
    module.base_model.conv1.weight, bn1.*, fc.{weight, bias}

The "module." and "base_model." prefixes are optional (a bare STM module's state_dict() is
accepted); a TSN wrapper's head `new_fc` is read as fc. One layout name, "authors". A plain
torchvision ImageNet ResNet (conv1.weight, layerL.b.convN.weight, ..., fc.*) has the same
backbone names: it is read as the "imagenet" form (a backbone; the STM modules keep their
initialisation, as the author's load_parameters("imagenet") leaves them).

Every key is rewritten to "<keras layer>:<torch parameter>" ("layer2_0_mb_stage_conv:weight",
"layer3_1_shift:weight", "fc:bias"); keras_target maps that to the Keras variable and the
transpose: Conv2d [out, in, kh, kw] -> [kh, kw, in, out], the CMM's depthwise Conv2d
[C, 1, 3, 3] -> NextFrameDifference [3, 3, C, 1], the CSTM Conv1d [C, 1, k] (stored here as
[C, k]) -> TemporalDepthwiseConv1D [k, C], Linear [out, in] -> [in, out].
"""

import re

from keras_tin.weights import layout_rules
from keras_tin.weights.layout_rules import BLOCK as _BLOCK

LAYOUT = "authors"
# (pattern on a stripped key, keras layer template from its groups, kind)
_RULES = layout_rules.STEM_AND_DOWNSAMPLE_RULES + (
    (re.compile(rf"^{_BLOCK}\.conv([1-3])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bn([1-3])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(rf"^{_BLOCK}\.shift\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_shift", "temporal"),
    (re.compile(rf"^{_BLOCK}\.mb\.(stage_conv|conv1x1)\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.mb\.stage_bn\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_stage_bn", "bn"),
    (re.compile(rf"^{_BLOCK}\.mb\.shift\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_shift", "depthwise"),
)
_STM_KEY = re.compile(r"(?:^|\.)layer[1-4]\.\d+\.(?:shift\.weight$|mb\.)")
# Keras layers of the STM modules (kept at their initialisation by an ImageNet backbone).
STM_LAYER = re.compile(r"^layer\d+_\d+_(?:shift|mb_\w+)$")
_BN_LAYER = re.compile(r"^(?:bn1|.*_(?:bn[1-3]|downsample_bn|mb_stage_bn))$")


def looks_like_stm(keys):
    """True for a state dict holding STM modules (CSTM shift or CMM mb.* keys)."""
    return any(_STM_KEY.search(key) for key in keys)


def canonicalize(state_dict, layout=None):
    """Rewrites an STM (or torchvision ResNet) state dict to "<keras layer>:<param>" names.

    Returns (canonical dict, layout, form): form "stm" when the blocks hold STM modules,
    "imagenet" for a plain ResNet backbone, "tsn-wrapper" for a wrapped ResNet without STM
    modules (a TSN video network, which convert_stm refuses). Raises ValueError listing
    every key no rule maps.
    """
    if layout not in (None, LAYOUT):
        raise ValueError(f"An STM checkpoint has layout {LAYOUT!r}. Received: "
                         f"layout={layout!r}")
    out, wrapped_keys = layout_rules.rewrite(
        state_dict, _RULES, f"a keras_tin STM-ResNet ({LAYOUT} layout: module.base_model."
        f"{{conv1, bn1, layerL.b.*, fc}} with layerL.b.shift / layerL.b.mb.{{stage_conv, "
        f"stage_bn, shift, conv1x1}})", _reshape)
    if looks_like_stm(state_dict):
        form = "stm"
    else:
        form = "tsn-wrapper" if wrapped_keys else "imagenet"
    return out, LAYOUT, form




def _reshape(canonical, value):
    """The CSTM Conv1d [C, 1, k] is stored as [C, k]."""
    if canonical.split(":")[0].endswith("_shift") and "_mb_" not in canonical \
            and value.ndim == 3 and value.shape[1] == 1:
        return value[:, 0, :]
    return value


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, _BN_LAYER.match)
    if target:
        return target
    if layer.endswith("_mb_shift"):
        return layer, "kernel", (2, 3, 0, 1)  # [C, 1, 3, 3] -> [3, 3, C, 1]
    if layer.endswith("_shift"):
        return layer, "kernel", (1, 0)  # [C, k] -> [k, C]
    return layer, "kernel", (2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
