"""Key layouts of the published PyTorch checkpoints, mapped onto keras_tin's layers.

Every layout is first rewritten to one canonical, torchvision-like naming:

    conv1.weight, bn1.{weight,bias,running_mean,running_var},
    layer{L}.{b}.conv{i}.weight, layer{L}.{b}.bn{i}.*,
    layer{L}.{b}.downsample.0.weight, layer{L}.{b}.downsample.1.*,
    layer{L}.{b}.tin.{offset_conv,offset_fc1,offset_fc2,weight_conv}.{weight,bias},
    layer{L}.{b}.nl.{g,theta,phi,conv_out}.{weight,bias}, layer{L}.{b}.nl.bn.*,
    layer{L}.{b}.eca.weight (ECA channel attention, layouts_eca.py),
    fc.{weight,bias}

and the canonical names are then mapped to Keras variables with the layout
conversions of docs/TIN_SPEC.md (Conv2d [out,in,kh,kw] -> [kh,kw,in,out], Conv1d
[out,in,k] -> [k,in,out], Linear [out,in] -> [in,out]).

The rules of each publisher live in a file of its own: layouts_openmmlab.py,
layouts_mit.py (MIT TSM), layouts_tin_authors.py (X-Temporal TIN), layouts_torchvision.py,
layouts_eca.py (ECA-Net ResNets: torchvision names plus layerL.b.eca.conv.weight);
the other families' layouts are in their converters' files (layouts_mobilenet.py,
layouts_tada.py, layouts_res2net.py, layouts_stm.py). This file holds the machinery:
detection, canonicalisation and the canonical -> Keras variable map.

Layouts (docs/TIN_SPEC.md, "Released checkpoints"):
- "openmmlab": mmaction2 recognizers: backbone.* (ConvModule conv/bn pairs; TSM wraps the
  first conv as conv1.conv.net, TIN as conv1.conv.net1 (offset_net/weight_net) + net2),
  cls_head.fc_cls.*. Non-local TSM (ResNetTSM non_local, NL3DWrapper) moves a wrapped
  block under backbone.layerL.b.block.* (read as backbone.layerL.b.*) and adds
  backbone.layerL.b.non_local_block.{g.0.conv, theta.conv, phi.0.conv, conv_out.conv,
  conv_out.bn}.* (mmcv NonLocal3d: Conv3d [out,in,1,1,1] weights, canonical as the
  Conv2d [out,in,1,1]; a temporal kernel size other than 1 is refused).
- "authors": the MIT TSM release and the TIN authors' X-Temporal release:
  module.base_model.* with torchvision names (TSM: conv1.net; TIN: conv1.net1.biasnet /
  weightnet + conv1.net2), head module.new_fc.*.
- "torchvision": a plain ImageNet ResNet (conv1.weight, ..., fc.*), used to initialise
  a backbone.
"""

import re

import numpy as np

from keras_tin.weights import layouts_eca
from keras_tin.weights import layouts_mit
from keras_tin.weights import layouts_openmmlab
from keras_tin.weights import layouts_tin_authors
from keras_tin.weights import layouts_torchvision

IGNORED_SUFFIXES = ("num_batches_tracked",)

# One file of rules per publisher; the "authors" layout is the MIT TSM and TIN authors'
# releases, which share the module.base_model / new_fc wrapper.
_OPENMMLAB_RULES = layouts_openmmlab.RULES
_OPENMMLAB_WRAPPED = layouts_openmmlab.WRAPPED
_NON_LOCAL_CONV = layouts_openmmlab.NON_LOCAL_CONV
_AUTHORS_RULES = layouts_tin_authors.RULES + layouts_mit.RULES
_TORCHVISION_RULES = layouts_torchvision.RULES + layouts_eca.RULES

LAYOUTS = ("openmmlab", "authors", "torchvision")


def detect_layout(keys):
    """'openmmlab', 'authors' or 'torchvision' from the state-dict keys."""
    keys = list(keys)
    if any(k.startswith("backbone.") for k in keys):
        return "openmmlab"
    if any("base_model." in k for k in keys):
        return "authors"
    stripped = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    if "conv1.weight" in stripped and any(k.startswith("layer1.") for k in stripped):
        return "torchvision"
    raise ValueError(
        "Unrecognised checkpoint layout: expected OpenMMLab keys (backbone.*, cls_head.*), "
        "the authors' keys (module.base_model.*, module.new_fc.*) or torchvision ResNet keys. "
        f"First keys: {keys[:8]}")


def detect_temporal(canonical_keys, raw_keys):
    """'tin', 'tsm', 'tsn', or None for a plain image backbone (torchvision)."""
    if any(".tin." in k for k in canonical_keys):
        return "tin"
    if any(re.search(r"\.conv1\.(conv\.)?net\.weight$", k) for k in raw_keys):
        return "tsm"
    return "tsn"


def _conv3d_as_conv2d(key, value):
    """A non-local Conv3d weight [out, in, 1, kh, kw] -> [out, in, kh, kw]."""
    if value.ndim == 5:
        if value.shape[2] != 1:
            raise ValueError(
                f"Checkpoint tensor {key!r} is a Conv3d weight {tuple(value.shape)} with "
                f"temporal kernel size {value.shape[2]}; keras_tin's non-local blocks use "
                f"1x1x1 convs (temporal size 1). Nothing was loaded.")
        value = value[:, :, 0]
    return value


def canonicalize(state_dict, layout=None):
    """Rewrites a state dict to canonical names.

    Returns (canonical dict, layout, temporal kind). Raises ValueError listing every key
    that no rule maps (never a silently partial conversion).
    """
    layout = layout or detect_layout(state_dict)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}. Received: layout={layout!r}")
    out, unmapped = {}, []
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        name = key[len("module."):] if key.startswith("module.") else key
        if layout == "authors":
            name = name[len("base_model."):] if name.startswith("base_model.") else name
            rules = _AUTHORS_RULES + _TORCHVISION_RULES
        elif layout == "openmmlab":
            name = _OPENMMLAB_WRAPPED.sub(r"\1.", name)
            rules = _OPENMMLAB_RULES
        else:
            rules = _TORCHVISION_RULES
        for pattern, repl in rules:
            if re.match(pattern, name):
                new = re.sub(pattern, repl, name)
                if new in out:
                    raise ValueError(f"Two checkpoint keys map to {new!r} (second: {key!r}).")
                value = np.asarray(value)
                if _NON_LOCAL_CONV.search(new):
                    value = _conv3d_as_conv2d(key, value)
                out[new] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} checkpoint keys have no place in a keras_tin temporal ResNet "
            f"({layout} layout); nothing was loaded. Unmapped keys: {unmapped}")
    temporal = None if layout == "torchvision" else detect_temporal(out, state_dict)
    return out, layout, temporal


_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
       "running_var": "moving_variance"}
_TIN = {"offset_conv": "offset_conv", "offset_fc1": "offset_fc1", "offset_fc2": "offset_fc2",
        "weight_conv": "weight_conv"}


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    parts = canonical.split(".")
    if parts[0] == "fc":
        return "fc", {"weight": "kernel", "bias": "bias"}[parts[1]], \
            ((1, 0) if parts[1] == "weight" else None)
    if parts[0] == "conv1":
        return "conv1", "kernel", (2, 3, 1, 0)
    if parts[0] == "bn1":
        return "bn1", _BN[parts[1]], None
    block = f"{parts[0]}_{parts[1]}"
    kind = parts[2]
    if kind.startswith("conv"):
        return f"{block}_{kind}", "kernel", (2, 3, 1, 0)
    if kind.startswith("bn"):
        return f"{block}_{kind}", _BN[parts[3]], None
    if kind == "downsample":
        if parts[3] == "0":
            return f"{block}_downsample_conv", "kernel", (2, 3, 1, 0)
        return f"{block}_downsample_bn", _BN[parts[4]], None
    if kind == "nl":
        module, what = parts[3], parts[4]
        if module == "bn":
            return f"{block}_nl_bn", _BN[what], None
        if what == "weight":
            return f"{block}_nl_{module}", "kernel", (2, 3, 1, 0)
        return f"{block}_nl_{module}", "bias", None
    if kind == "eca":
        return layouts_eca.keras_target(block)
    if kind == "tin":
        module, what = parts[3], parts[4]
        var = f"{_TIN[module]}_{'kernel' if what == 'weight' else 'bias'}"
        if what == "bias":
            return f"{block}_conv1", var, None
        return f"{block}_conv1", var, ((1, 0) if "fc" in module else (2, 1, 0))
    raise KeyError(canonical)
