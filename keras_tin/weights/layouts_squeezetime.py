"""The key layout of the published SqueezeTime checkpoints (xinghaochen/SqueezeTime, an
mmaction2 1.x plug-in), mapped onto keras_tin.applications.SqueezeTime.

mmaction2 saves {"meta", "state_dict", ...}; the Recognizer3D holds `backbone` (the
publisher's `SqueezeTime` module, whose network is its attribute `net`) and `cls_head`
(I2DHead, Linear `fc_cls`). The keys (from the code, not from a downloaded file):

    backbone.net.conv1.weight (64, 3T, 5, 5)                -> conv1 (kernel)
    backbone.net.bn1.*                                      -> bn1
    backbone.net.layer{s}.{i}.<module>.<param>              -> layer{s}_{i}_<module, "." -> "_">
        downsample.0.{weight (C, 1, 2, 2), bias}            depthwise conv (stride-2 blocks)
        downsample.1.*, bn1.*, bn2.*, bn3.*                 BatchNorm
        conv1.weight, conv3.weight                          1x1 convs
        conv2.param_conv.1.weight, .4.weight                1x1 convs (no bias)
        conv2.param_conv.2.*                                BatchNorm
        conv2.temporal_conv.weight                          1x1 conv (no bias)
        conv2.spatial_conv.short_conv.{weight, bias}        3x3 conv
        conv2.spatial_conv.glo_conv.{0,3,6}.{weight, bias}  3x3 / 7x7 / 3x3 convs
        conv2.spatial_conv.glo_conv.{1,4}.*                 BatchNorm
        conv2.spatial_conv.pos_embed (1, 16, P, P)          -> ..._pos_embed (pos_embed)
        shortcut_conv.0.weight, shortcut_conv.1.*           projection shortcut
    cls_head.fc_cls.{weight, bias}                          -> fc

Accepted prefixes, so the publisher's own loader's forms load too: "backbone.net." (the
mmaction2 checkpoints), "backbone.", "net." and none (the bare network, what the
publisher's `load_ckpts` matches against), each optionally under a DataParallel
"module."; a bare network's classifier may be "fc.". "num_batches_tracked" entries are
ignored. Every other key is reported, and nothing is loaded.

The layout is "openmmlab" (an mmaction2 checkpoint), as in the manifest records.
"""

import re

import numpy as np

from keras_tin.weights import layout_rules

LAYOUT = "openmmlab"
IGNORED_SUFFIXES = ("num_batches_tracked",)
_PREFIXES = ("backbone.net.", "backbone.", "net.")

_STEM = re.compile(r"^(conv1|bn1)\.(\w+)$")
_BLOCK = re.compile(
    r"^layer([1-9])\.(\d+)\.(downsample\.[01]|conv1|bn1|bn2|conv3|bn3|shortcut_conv\.[01]|"
    r"conv2\.param_conv\.[124]|conv2\.temporal_conv|conv2\.spatial_conv\.short_conv|"
    r"conv2\.spatial_conv\.glo_conv\.[01346]|conv2\.spatial_conv)\.(\w+)$")
_HEAD = re.compile(r"^(?:cls_head\.fc_cls|fc)\.(weight|bias)$")
_CTL = re.compile(r"(^|\.)layer\d+\.\d+\.conv2\.(param_conv|temporal_conv|spatial_conv)\.")

# module (after layer{s}.{i}.) -> kind
_BN_MODULES = re.compile(r"^(downsample\.1|bn[123]|shortcut_conv\.1|conv2\.param_conv\.2|"
                         r"conv2\.spatial_conv\.glo_conv\.[14])$")
_PARAMS = {"conv": ("weight", "bias"), "depthwise": ("weight", "bias"),
           "bn": ("weight", "bias", "running_mean", "running_var"),
           "embed": ("pos_embed",)}


def _strip(key):
    """The key without "module." and the backbone prefix, and whether it was a head key."""
    name = key[len("module."):] if key.startswith("module.") else key
    if name.startswith("cls_head."):
        return name
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def looks_like_squeezetime(keys):
    """True for a state dict holding SqueezeTime's CTL blocks (any accepted prefix)."""
    return any(_CTL.search(_strip(k)) for k in keys)


def stem_channels(state_dict):
    """Input channels of the checkpoint's stem (3 * T), or None without a stem."""
    for key, value in state_dict.items():
        if _strip(key) == "conv1.weight" and np.ndim(value) == 4:
            return int(np.shape(value)[1])
    return None


def _kind(module):
    if module == "downsample.0":
        return "depthwise"
    if _BN_MODULES.match(module):
        return "bn"
    if module == "conv2.spatial_conv":
        return "embed"
    return "conv"


def _map(key):
    """(keras layer, param, kind) or None."""
    name = _strip(key)
    match = _HEAD.match(name)
    if match:
        return "fc", match.group(1), "head"
    match = _STEM.match(name)
    if match:
        module, param = match.groups()
        kind = "bn" if module == "bn1" else "conv"
        if param not in _PARAMS[kind] or (kind == "conv" and param == "bias"):
            return None
        return module, param, kind
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, index, module, param = match.groups()
    kind = _kind(module)
    if param not in _PARAMS[kind]:
        return None
    layer = f"layer{stage}_{int(index)}_{module.replace('.', '_')}"
    if kind == "embed":
        layer += "_pos_embed"
    return layer, param, kind


def canonicalize(state_dict, layout=None):
    """Rewrites a SqueezeTime state dict to "<keras layer>:<param>:<kind>" names. Returns
    (canonical dict, layout). Raises ValueError listing every key no rule maps."""
    if layout not in (None, LAYOUT, "squeezetime"):
        raise ValueError(f"A SqueezeTime checkpoint has layout {LAYOUT!r} (mmaction2). "
                         f"Received: layout={layout!r}")
    out, unmapped = {}, []
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        mapped = _map(key)
        if mapped is None:
            unmapped.append(key)
            continue
        name = ":".join(mapped)
        if name in out:
            raise ValueError(f"Two checkpoint keys map to {name!r} (second: {key!r}).")
        value = np.asarray(value)
        if mapped[2] == "embed" and value.ndim == 4 and value.shape[0] == 1:
            value = value[0]  # (1, 16, P, P) -> (16, P, P)
        out[name] = value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} checkpoint keys have no place in a keras_tin SqueezeTime "
            f"({LAYOUT} layout: backbone.net.*, cls_head.fc_cls.*); nothing was loaded. "
            f"Unmapped keys: {unmapped}")
    return out, LAYOUT


_BN = layout_rules.BN


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param, kind = canonical.split(":")
    if kind == "head":
        return "fc", ("kernel" if param == "weight" else "bias"), (
            (1, 0) if param == "weight" else None)
    if kind == "bn":
        return layer, _BN[param], None
    if kind == "embed":
        return layer, "pos_embed", (1, 2, 0)  # (16, P, P) -> (P, P, 16)
    if param == "bias":
        return layer, "bias", None
    if kind == "depthwise":
        return layer, "kernel", (2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return layer, "kernel", (2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
