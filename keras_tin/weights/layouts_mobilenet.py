"""Key layouts of the published TSM-MobileNetV2 checkpoints, mapped onto keras_tin's
TemporalMobileNetV2 (keras_tin/applications/mobilenet_v2.py).

Both published networks are the standard MobileNetV2 (width 1.0: stem 32, last conv 1280,
bias-free convs, BatchNorm eps 1e-5, ReLU6, symmetric padding 1) with the temporal shift
(shift_div 8) in front of the 1x1 expansion conv of every inverted residual block that has
a residual connection: our blocks 2, 4, 5, 7, 8, 9, 11, 12, 14, 15. Only the key names
differ:

- "openmmlab" (mmaction2 MobileNetV2TSM + TSMHead): mmcv ConvModules,
      backbone.conv1.{conv,bn}.*, backbone.layer{s}.{j}.conv.{k}.{conv,bn}.*,
      backbone.conv2.{conv,bn}.*, cls_head.fc_cls.*
  with a shifted block's first ConvModule wrapped: layer{s}.{j}.conv.0.net.{conv,bn}.*.
- "authors" (MIT temporal-shift-module, archs/mobilenet_v2.py inside ops/models.py's TSN):
      module.base_model.features.0.{0,1}.*, module.base_model.features.{1..17}.conv.{k}.*,
      module.base_model.features.18.{0,1}.*, module.new_fc.* (or
      module.base_model.classifier.*, which test_models.py renames to new_fc)
  with a shifted block's first Conv2d wrapped: features.{i}.conv.0.net.weight.
- "torchvision": a plain ImageNet torchvision mobilenet_v2 (features.{i}.conv.{k}.{0,1}.*
  for conv-BN-ReLU6 groups, classifier.1.*), to initialise a backbone.

Every key is rewritten to "<keras layer>:<torch parameter>" (e.g. "block2_expand:weight",
"block2_expand_bn:running_var", "fc:bias"); keras_target maps that to the Keras variable
and the transpose: Conv2d [out, in, kh, kw] -> [kh, kw, in, out], depthwise Conv2d
[C, 1, kh, kw] -> DepthwiseConv2D [kh, kw, C, 1], Linear [out, in] -> [in, out].

- "online" (MIT temporal-shift-module online_demo/mobilenet_v2_tsm.py, the online TSM
  Jester model mobilenetv2_jester_online.pth.tar): flat keys features.0.{0,1}.*,
  features.{1..17}.conv.{k}.*, features.18.{0,1}.*, classifier.*; the shift is a cache of
  the previous frame (no .net wrapper, no weights), in the blocks of its shift_block_idx
  [2, 4, 5, 7, 8, 9, 11, 12, 14, 15] (features index - 1: our SHIFTED_BLOCKS). It loads into
  TSMMobileNetV2(online=True) only (keras_tin.streaming runs it frame by frame).

The same flat keys are also the tonylins ImageNet MobileNetV2's, so they are taken as
"online" only for an online model (or with layout="online"); otherwise they are refused
with a message.
"""

import re

import numpy as np

from keras_tin.weights import layout_rules

# (expansion t, output channels c, blocks n, first stride s), from the MobileNetV2 paper.
# keras_tin.applications.mobilenet_v2 builds from this table (it lives here so that the
# weights package never imports the model builders).
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAYOUTS = ("openmmlab", "authors", "torchvision", "online")
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _blocks():
    """[(stage 1..7, index in stage, expansion, residual)] for our block0..block16."""
    out = []
    channels = 32
    for stage, (expansion, filters, count, stride) in enumerate(INVERTED_RESIDUAL_SETTINGS, 1):
        for j in range(count):
            residual = (stride if j == 0 else 1) == 1 and channels == filters
            out.append((stage, j, expansion, residual))
            channels = filters
    return out


BLOCKS = _blocks()
_BLOCK_OF_STAGE = {(stage, j): i for i, (stage, j, _, _) in enumerate(BLOCKS)}
LAST_FEATURE = len(BLOCKS) + 1  # features.18: the 1x1 conv to 1280 channels
SHIFTED_BLOCKS = tuple(i for i, (_, _, t, res) in enumerate(BLOCKS) if res and t != 1)

# Positions inside a block's `conv` Sequential -> (role, conv or bn), per expansion.
_OPENMMLAB_POSITIONS = {  # ConvModules: conv.{k}.conv / conv.{k}.bn
    True: {0: "expand", 1: "depthwise", 2: "project"},
    False: {0: "depthwise", 1: "project"},
}
_AUTHORS_POSITIONS = {  # conv, bn, relu6, conv, bn, relu6, conv, bn
    True: {0: ("expand", "conv"), 1: ("expand", "bn"), 3: ("depthwise", "conv"),
           4: ("depthwise", "bn"), 6: ("project", "conv"), 7: ("project", "bn")},
    False: {0: ("depthwise", "conv"), 1: ("depthwise", "bn"), 3: ("project", "conv"),
            4: ("project", "bn")},
}
_TORCHVISION_POSITIONS = {  # (k, sub) with sub None for the bare pw-linear conv and its BN
    True: {(0, 0): ("expand", "conv"), (0, 1): ("expand", "bn"), (1, 0): ("depthwise", "conv"),
           (1, 1): ("depthwise", "bn"), (2, None): ("project", "conv"),
           (3, None): ("project", "bn")},
    False: {(0, 0): ("depthwise", "conv"), (0, 1): ("depthwise", "bn"),
            (1, None): ("project", "conv"), (2, None): ("project", "bn")},
}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")

_MM_BLOCK = re.compile(r"^backbone\.layer(\d+)\.(\d+)\.conv\.(\d+)\.(net\.)?(conv|bn)\.(\w+)$")
_MM_OUTER = re.compile(r"^backbone\.(conv1|conv2)\.(conv|bn)\.(\w+)$")
_FEATURE_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(net\.)?(\w+)$")
_TV_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(?:(\d+)\.)?(\w+)$")
_FEATURE_OUTER = re.compile(r"^features\.(\d+)\.([01])\.(\w+)$")


def _strip(key):
    return key[len("module."):] if key.startswith("module.") else key


def _layer(role_or_outer, kind, block=None):
    name = role_or_outer if block is None else f"block{block}_{role_or_outer}"
    return name + "_bn" if kind == "bn" else name


def _outer(index, kind):
    """features.0 / features.18 (conv, BN) -> conv1/bn1, conv_last/conv_last_bn."""
    if index == 0:
        return "bn1" if kind == "bn" else "conv1"
    if index == LAST_FEATURE:
        return "conv_last_bn" if kind == "bn" else "conv_last"
    return None


def _valid_param(kind, param):
    return param in _BN_PARAMS if kind == "bn" else param == "weight"


def _map_openmmlab(key):
    """(canonical, shifted block or None) or None when unmapped."""
    match = re.match(r"^cls_head\.fc_cls\.(weight|bias)$", key)
    if match:
        return f"fc:{match.group(1)}", None
    match = _MM_OUTER.match(key)
    if match:
        which, kind, param = match.groups()
        if not _valid_param(kind, param):
            return None
        base = "conv1" if which == "conv1" else "conv_last"
        name = ("bn1" if base == "conv1" else "conv_last_bn") if kind == "bn" else base
        return f"{name}:{param}", None
    match = _MM_BLOCK.match(key)
    if not match:
        return None
    stage, j, k, net, kind, param = match.groups()
    block = _BLOCK_OF_STAGE.get((int(stage), int(j)))
    if block is None or not _valid_param(kind, param):
        return None
    role = _OPENMMLAB_POSITIONS[BLOCKS[block][2] != 1].get(int(k))
    if role is None:
        return None
    if net and role != "expand":
        return None  # the shift wraps only the expansion ConvModule
    return f"{_layer(role, kind, block)}:{param}", (block if net else None)


def _map_features(key, torchvision):
    match = _FEATURE_OUTER.match(key)
    if match:
        index, sub, param = int(match.group(1)), match.group(2), match.group(3)
        kind = "bn" if sub == "1" else "conv"
        name = _outer(index, kind)
        if name is None or not _valid_param(kind, param):
            return None
        return f"{name}:{param}", None
    if torchvision:
        match = _TV_BLOCK.match(key)
        if not match:
            return None
        index, k, sub, param = match.groups()
        net = None
        position = (int(k), None if sub is None else int(sub))
    else:
        match = _FEATURE_BLOCK.match(key)
        if not match:
            return None
        index, k, net, param = match.groups()
        position = int(k)
    block = int(index) - 1
    if not 0 <= block < len(BLOCKS):
        return None
    table = (_TORCHVISION_POSITIONS if torchvision else _AUTHORS_POSITIONS)[BLOCKS[block][2] != 1]
    role_kind = table.get(position)
    if role_kind is None or not _valid_param(role_kind[1], param):
        return None
    role, kind = role_kind
    if net and (role, kind) != ("expand", "conv"):
        return None  # the shift wraps only the expansion Conv2d
    return f"{_layer(role, kind, block)}:{param}", (block if net else None)


def _map_authors(key):
    name = _strip(key)
    # The head is new_fc; test_models.py also renames base_model.classifier.* to new_fc.*
    # (a TSN built with dropout 0 keeps the Linear there), so both are the classifier.
    match = re.match(r"^(?:new_fc|base_model\.classifier)\.(weight|bias)$", name)
    if match:
        return f"fc:{match.group(1)}", None
    if not name.startswith("base_model."):
        return None
    return _map_features(name[len("base_model."):], torchvision=False)


def _map_torchvision(key):
    name = _strip(key)
    match = re.match(r"^classifier\.1\.(weight|bias)$", name)
    if match:
        return f"fc:{match.group(1)}", None
    return _map_features(name, torchvision=True)


def _map_online(key):
    name = _strip(key)
    match = re.match(r"^classifier\.(weight|bias)$", name)
    if match:
        return f"fc:{match.group(1)}", None
    if ".net." in name:
        return None  # an offline (bi-directional) TSM key: not this layout
    return _map_features(name, torchvision=False)


_MAPPERS = {"openmmlab": _map_openmmlab, "authors": _map_authors,
            "torchvision": _map_torchvision, "online": _map_online}


def _is_flat_features(keys):
    """MobileNetV2 keys with un-nested blocks and no base_model (MIT online demo,
    tonylins ImageNet)."""
    stripped = [_strip(k) for k in keys]
    return (any(re.match(r"^features\.1\.conv\.\d+\.weight$", k) for k in stripped)
            and not any(k.startswith("base_model.") for k in stripped))


def is_flat_features(keys):
    """The flat keys of the MIT online demo (and of the tonylins ImageNet MobileNetV2)."""
    return _is_flat_features(keys)


def detect_layout(keys):
    """'openmmlab', 'authors' or 'torchvision' for MobileNetV2 keys, or None."""
    keys = list(keys)
    stripped = [_strip(k) for k in keys]
    if any(_MM_BLOCK.match(k) for k in keys) or "backbone.conv2.conv.weight" in keys:
        return "openmmlab"
    if any(k.startswith("base_model.features.") for k in stripped):
        return "authors"
    if "features.0.0.weight" in stripped and (
            any(re.match(r"^features\.\d+\.conv\.\d+\.\d+\.weight$", k) for k in stripped)
            or "classifier.1.weight" in stripped):
        return "torchvision"
    return None


def looks_like_mobilenet(keys):
    """True for any MobileNetV2 state dict, including the unsupported flat layout."""
    keys = list(keys)
    return detect_layout(keys) is not None or _is_flat_features(keys)


def canonicalize(state_dict, layout=None):
    """Rewrites a MobileNetV2 state dict to "<keras layer>:<param>" names.

    Returns (canonical dict, layout, temporal, shifted blocks): temporal is "tsm" when some
    block's expansion conv is wrapped by the shift (.net), "tsn" when none is, None for a
    plain torchvision backbone. Raises ValueError listing every key no rule maps.
    """
    keys = list(state_dict)
    if layout is None:
        layout = detect_layout(keys)
        if layout is None:
            if _is_flat_features(keys):
                raise ValueError(
                    "This MobileNetV2 state dict has flat keys (features.N.conv.K.*, "
                    "classifier.*) without module.base_model: the layout of the MIT online "
                    "demo (online_demo/mobilenet_v2_tsm.py, the causal cached shift) and of "
                    "the tonylins ImageNet MobileNetV2. The online demo's checkpoint loads into "
                    "TSMMobileNetV2(online=True) (or pass layout='online'); the tonylins "
                    "one is not supported: use a torchvision mobilenet_v2 state dict.")
            raise ValueError(
                "Unrecognised MobileNetV2 checkpoint layout: expected mmaction2 keys "
                "(backbone.layerS.J.conv.K.*, cls_head.fc_cls.*), the MIT TSM keys "
                "(module.base_model.features.*, module.new_fc.*) or torchvision mobilenet_v2 "
                f"keys (features.*, classifier.1.*). First keys: {keys[:8]}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}. Received: layout={layout!r}")
    mapper = _MAPPERS[layout]
    out, unmapped, shifted = {}, [], set()
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        mapped = mapper(key)
        if mapped is None:
            unmapped.append(key)
            continue
        name, block = mapped
        if name in out:
            raise ValueError(f"Two checkpoint keys map to {name!r} (second: {key!r}).")
        out[name] = np.asarray(value)
        if block is not None:
            shifted.add(block)
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} checkpoint keys have no place in a keras_tin TemporalMobileNetV2 "
            f"({layout} layout); nothing was loaded. Unmapped keys: {unmapped}")
    if layout == "torchvision":
        temporal = None
    elif layout == "online":  # the shift has no key: it is where the online demo puts it
        temporal, shifted = "tsm_online", set(SHIFTED_BLOCKS)
    else:
        temporal = "tsm" if shifted else "tsn"
    return out, layout, temporal, sorted(shifted)




def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(
        layer, param, lambda name: name.endswith("_bn") or name == "bn1")
    if target:
        return target
    if layer.endswith("_depthwise"):
        return layer, "kernel", (2, 3, 0, 1)  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    return layer, "kernel", (2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
