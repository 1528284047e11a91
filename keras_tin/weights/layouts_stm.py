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

import numpy as np

LAYOUT = "authors"
IGNORED_SUFFIXES = ("num_batches_tracked",)
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_BLOCK = r"layer([1-4])\.(\d+)"
# (pattern on a stripped key, keras layer template from its groups, kind)
_RULES = (
    (re.compile(r"^conv1\.(weight)$"), lambda m: "conv1", "conv"),
    (re.compile(r"^bn1\.(\w+)$"), lambda m: "bn1", "bn"),
    (re.compile(rf"^{_BLOCK}\.conv([1-3])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bn([1-3])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(rf"^{_BLOCK}\.downsample\.0\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_conv", "conv"),
    (re.compile(rf"^{_BLOCK}\.downsample\.1\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_bn", "bn"),
    (re.compile(rf"^{_BLOCK}\.shift\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_shift", "temporal"),
    (re.compile(rf"^{_BLOCK}\.mb\.(stage_conv|conv1x1)\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.mb\.stage_bn\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_stage_bn", "bn"),
    (re.compile(rf"^{_BLOCK}\.mb\.shift\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_mb_shift", "depthwise"),
)
_HEAD = re.compile(r"^(?:new_fc|fc)\.(weight|bias)$")
_STM_KEY = re.compile(r"(?:^|\.)layer[1-4]\.\d+\.(?:shift\.weight$|mb\.)")
# Keras layers of the STM modules (kept at their initialisation by an ImageNet backbone).
STM_LAYER = re.compile(r"^layer\d+_\d+_(?:shift|mb_\w+)$")
_BN_LAYER = re.compile(r"^(?:bn1|.*_(?:bn[1-3]|downsample_bn|mb_stage_bn))$")


def _strip(key):
    """(key without the DataParallel / TSN prefixes, whether it had base_model. or new_fc.)"""
    name = key[len("module."):] if key.startswith("module.") else key
    wrapped = name.startswith(("base_model.", "new_fc."))
    if name.startswith("base_model."):
        name = name[len("base_model."):]
    return name, wrapped


def looks_like_stm(keys):
    """True for a state dict holding STM modules (CSTM shift or CMM mb.* keys)."""
    return any(_STM_KEY.search(key) for key in keys)


def _map(name):
    """Canonical "<layer>:<param>" of a stripped key, or None."""
    match = _HEAD.match(name)
    if match:
        return f"fc:{match.group(1)}"
    for pattern, layer, kind in _RULES:
        match = pattern.match(name)
        if match:
            param = match.groups()[-1]
            if kind == "bn" and param not in _BN_PARAMS:
                return None
            return f"{layer(match)}:{param}"
    return None


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
    out, unmapped, wrapped_keys = {}, [], 0
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        name, wrapped = _strip(key)
        wrapped_keys += wrapped
        canonical = _map(name)
        if canonical is None:
            unmapped.append(key)
            continue
        if canonical in out:
            raise ValueError(f"Two checkpoint keys map to {canonical!r} (second: {key!r}).")
        value = np.asarray(value)
        if canonical.split(":")[0].endswith("_shift") and "_mb_" not in canonical \
                and value.ndim == 3 and value.shape[1] == 1:
            value = value[:, 0, :]  # Conv1d [C, 1, k] -> [C, k]
        out[canonical] = value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} checkpoint keys have no place in a keras_tin STM-ResNet "
            f"({LAYOUT} layout: module.base_model.{{conv1, bn1, layerL.b.*, fc}} with "
            f"layerL.b.shift / layerL.b.mb.{{stage_conv, stage_bn, shift, conv1x1}}); nothing "
            f"was loaded. Unmapped keys: {unmapped}")
    if looks_like_stm(state_dict):
        form = "stm"
    else:
        form = "tsn-wrapper" if wrapped_keys else "imagenet"
    return out, LAYOUT, form


_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
       "running_var": "moving_variance"}


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    if layer == "fc":
        return "fc", {"weight": "kernel", "bias": "bias"}[param], \
            ((1, 0) if param == "weight" else None)
    if _BN_LAYER.match(layer):
        return layer, _BN[param], None
    if layer.endswith("_mb_shift"):
        return layer, "kernel", (2, 3, 0, 1)  # [C, 1, 3, 3] -> [3, 3, C, 1]
    if layer.endswith("_shift"):
        return layer, "kernel", (1, 0)  # [C, k] -> [k, C]
    return layer, "kernel", (2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
