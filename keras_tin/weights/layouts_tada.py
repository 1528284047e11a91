"""The key layout of the published TAda2D checkpoints (alibaba-mmai-research/TAdaConv),
mapped onto keras_tin's TAda2D ResNets (keras_tin/layers/tada.py).

The publisher saves {"model_state": state_dict, "epoch", "optimizer_state", "cfg"}
(tadaconv/utils/checkpoint.py save_checkpoint; load_checkpoint reads "model_state").
Its BaseVideoModel holds `backbone` (ResNet3D: stem conv1, stages conv2..conv5 of blocks
res_1..res_n) and `head` (BaseHead, Linear `out`):

    backbone.conv1.a.weight (64, 3, 1, 7, 7), backbone.conv1.a_bn.*        -> conv1, bn1
    backbone.conv{S}.res_{i}.short_cut.weight (O, I, 1, 1, 1), short_cut_bn.*
                                                -> layer{S-1}_{i-1}_downsample_conv / _bn
    backbone.conv{S}.res_{i}.conv_branch.
        a.weight (C, I, 1, 1, 1), a_bn.*        -> layer{S-1}_{i-1}_conv1, _bn1
        b.weight (1, 1, C, C, 3, 3)             -> _conv2 (the TAdaConv2d base kernel)
        b_rf.g.{weight (C, C, 1, 1, 1), bias}   -> _tada_rf_g (kernel, bias)
        b_rf.a.{weight (C/4, C, 3, 1, 1), bias} -> _tada_rf_a
        b_rf.bn.*                               -> _tada_rf_bn
        b_rf.b.weight (C, C/4, 3, 1, 1)         -> _tada_rf_b
        b_bn.*                                  -> _bn2
        b_avgpool_bn.*                          -> _tada_pool_bn
        c.weight (4C, C, 1, 1, 1), c_bn.*       -> _conv3, _bn3
    head.out.{weight, bias}                     -> fc

Every key is rewritten to "<keras layer>:<torch parameter>" with its tensor reshaped to
the 2-D conv / 1-D conv / dense form (the singleton temporal axes of the Conv3d weights and
the two leading axes of the TAdaConv2d weight dropped, only when they are 1, so a tensor
of another shape is reported as a shape mismatch); keras_target gives the Keras variable
and the transpose. "num_batches_tracked" entries are ignored; a DataParallel "module."
prefix is removed.
"""

import re

import numpy as np

from keras_tin.weights import layout_rules

LAYOUT = "tadaconv"
IGNORED_SUFFIXES = ("num_batches_tracked",)
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")

_STEM = re.compile(r"^backbone\.conv1\.(a|a_bn)\.(\w+)$")
_BLOCK = re.compile(r"^backbone\.conv([2-9])\.res_(\d+)\.(short_cut|short_cut_bn|"
                    r"conv_branch\.(?:a|a_bn|b|b_bn|b_avgpool_bn|c|c_bn|b_rf\.(?:g|a|bn|b)))"
                    r"\.(\w+)$")
_HEAD = re.compile(r"^head\.out\.(weight|bias)$")

# module in the block -> (keras layer suffix, kind)
_BLOCK_MODULES = {
    "short_cut": ("downsample_conv", "conv"),
    "short_cut_bn": ("downsample_bn", "bn"),
    "conv_branch.a": ("conv1", "conv"),
    "conv_branch.a_bn": ("bn1", "bn"),
    "conv_branch.b": ("conv2", "tada"),
    "conv_branch.b_bn": ("bn2", "bn"),
    "conv_branch.b_avgpool_bn": ("tada_pool_bn", "bn"),
    "conv_branch.c": ("conv3", "conv"),
    "conv_branch.c_bn": ("bn3", "bn"),
    "conv_branch.b_rf.g": ("tada_rf_g", "dense"),
    "conv_branch.b_rf.a": ("tada_rf_a", "tconv"),
    "conv_branch.b_rf.bn": ("tada_rf_bn", "bn"),
    "conv_branch.b_rf.b": ("tada_rf_b", "tconv"),
}
_PARAMS = {"conv": ("weight",), "tada": ("weight",), "dense": ("weight", "bias"),
           "tconv": ("weight", "bias"), "bn": _BN_PARAMS}
# canonical layer suffix -> kind, for keras_target
_KIND_OF_SUFFIX = {suffix: kind for suffix, kind in _BLOCK_MODULES.values()}


def _strip(key):
    return key[len("module."):] if key.startswith("module.") else key


def looks_like_tadaconv(keys):
    """True for a state dict in the TAdaConv repository's ResNet layout (TAda2D or not)."""
    stripped = [_strip(k) for k in keys]
    return any(_STEM.match(k) or _BLOCK.match(k) for k in stripped)


def is_tada2d(keys):
    """True when the state dict has TAda route functions (a TAda2D network)."""
    return any(".conv_branch.b_rf." in k for k in keys)


def _map(key):
    """(keras layer, param, kind) or None."""
    name = _strip(key)
    match = _HEAD.match(name)
    if match:
        return "fc", match.group(1), "head"
    match = _STEM.match(name)
    if match:
        module, param = match.groups()
        kind = "bn" if module == "a_bn" else "conv"
        if param not in _PARAMS[kind]:
            return None
        return ("bn1" if kind == "bn" else "conv1"), param, kind
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, index, module, param = match.groups()
    suffix, kind = _BLOCK_MODULES[module]
    if param not in _PARAMS[kind] or int(index) < 1:
        return None
    return f"layer{int(stage) - 1}_{int(index) - 1}_{suffix}", param, kind


def _reshape(value, kind, param):
    """Drops the singleton axes that make the PyTorch tensor 5-D / 6-D."""
    if param != "weight":
        return value
    if kind == "conv" and value.ndim == 5 and value.shape[2] == 1:
        return value[:, :, 0]  # (O, I, 1, kh, kw) -> (O, I, kh, kw)
    if kind == "tada" and value.ndim == 6 and value.shape[:2] == (1, 1):
        return value[0, 0]  # (1, 1, O, I, kh, kw) -> (O, I, kh, kw)
    if kind == "dense" and value.ndim == 5 and value.shape[2:] == (1, 1, 1):
        return value[:, :, 0, 0, 0]  # (O, I, 1, 1, 1) -> (O, I)
    if kind == "tconv" and value.ndim == 5 and value.shape[3:] == (1, 1):
        return value[:, :, :, 0, 0]  # (O, I, k, 1, 1) -> (O, I, k)
    return value


def canonicalize(state_dict, layout=None):
    """Rewrites a TAdaConv state dict to "<keras layer>:<param>" names (see the module
    docstring). Returns (canonical dict, layout). Raises ValueError listing every key no
    rule maps, and for a layout other than "tadaconv"."""
    if layout not in (None, LAYOUT):
        raise ValueError(f"A TAdaConv checkpoint has layout {LAYOUT!r}. Received: "
                         f"layout={layout!r}")
    out, unmapped = {}, []
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        mapped = _map(key)
        if mapped is None:
            unmapped.append(key)
            continue
        layer, param, kind = mapped
        name = f"{layer}:{param}"
        if name in out:
            raise ValueError(f"Two checkpoint keys map to {name!r} (second: {key!r}).")
        out[name] = _reshape(np.asarray(value), kind, param)
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} checkpoint keys have no place in a keras_tin TAda2D ResNet "
            f"({LAYOUT} layout); nothing was loaded. Unmapped keys: {unmapped}")
    return out, LAYOUT


_BN = layout_rules.BN


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, lambda name: name == "bn1")
    if target:
        return target
    if layer == "conv1":
        return layer, "kernel", (2, 3, 1, 0)
    suffix = re.sub(r"^layer\d+_\d+_", "", layer)
    kind = _KIND_OF_SUFFIX[suffix]
    if kind == "bn":
        return layer, _BN[param], None
    if param == "bias":
        return layer, "bias", None
    if kind == "dense":
        return layer, "kernel", (1, 0)  # (O, I) -> (I, O)
    if kind == "tconv":
        return layer, "kernel", (2, 1, 0)  # (O, I, k) -> (k, I, O)
    return layer, "kernel", (2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
