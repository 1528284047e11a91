"""What the rule-based key layouts of the zoo families share (layouts_res2net.py,
layouts_stm.py, and the BN / classifier mapping of layouts_tada.py and layouts_mobilenet.py).

A family layout is a list of rules `(compiled pattern on a stripped key, function match ->
Keras layer name, kind)`: kind "bn" for BatchNorm parameters, anything else for a weight
whose transpose the family's `keras_target` decides. Keys are first stripped of the
DataParallel `module.` and the TSN wrapper's `base_model.` prefixes; the wrapper's
classifier (`new_fc.*`) and a plain `fc.*` both map to the Keras layer "fc". Canonical names
are "<keras layer>:<torch parameter>" ("layer3_1_shift:weight", "fc:bias").
"""

import re

import numpy as np

IGNORED_SUFFIXES = ("num_batches_tracked",)
BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
      "running_var": "moving_variance"}
BLOCK = r"layer([1-4])\.(\d+)"
HEAD = re.compile(r"^(?:new_fc|fc)\.(weight|bias)$")
# The torchvision-named stem and shortcut every ResNet-family layout shares.
STEM_AND_DOWNSAMPLE_RULES = (
    (re.compile(r"^conv1\.(weight)$"), lambda m: "conv1", "conv"),
    (re.compile(r"^bn1\.(\w+)$"), lambda m: "bn1", "bn"),
    (re.compile(rf"^{BLOCK}\.downsample\.0\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_conv", "conv"),
    (re.compile(rf"^{BLOCK}\.downsample\.1\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_bn", "bn"),
)


def strip(key):
    """(key without `module.` / `base_model.`, whether it came from a TSN wrapper: it had
    base_model. or is the wrapper's new_fc)."""
    name = key[len("module."):] if key.startswith("module.") else key
    wrapped = name.startswith(("base_model.", "new_fc."))
    if name.startswith("base_model."):
        name = name[len("base_model."):]
    return name, wrapped


def map_key(name, rules):
    """Canonical "<layer>:<param>" of a stripped key, or None when no rule takes it."""
    match = HEAD.match(name)
    if match:
        return f"fc:{match.group(1)}"
    for pattern, layer, kind in rules:
        match = pattern.match(name)
        if match:
            param = match.groups()[-1]
            if kind == "bn" and param not in BN_PARAMS:
                return None
            return f"{layer(match)}:{param}"
    return None


def rewrite(state_dict, rules, describe, reshape=None):
    """Maps every key of a state dict through `rules`, all or nothing.

    reshape(canonical, array) -> array adapts a tensor (e.g. a Conv1d [C, 1, k] to [C, k]).
    Returns (canonical dict, number of keys that came from a TSN wrapper). Raises ValueError
    listing every key no rule maps (`describe` names the expected layout in the message),
    or naming two keys that map to the same place.
    """
    out, unmapped, wrapped_keys = {}, [], 0
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        name, wrapped = strip(key)
        wrapped_keys += wrapped
        canonical = map_key(name, rules)
        if canonical is None:
            unmapped.append(key)
            continue
        if canonical in out:
            raise ValueError(f"Two checkpoint keys map to {canonical!r} (second: {key!r}).")
        value = np.asarray(value)
        out[canonical] = reshape(canonical, value) if reshape else value
    if unmapped:
        raise ValueError(f"{len(unmapped)} checkpoint keys have no place in {describe}; "
                         f"nothing was loaded. Unmapped keys: {unmapped}")
    return out, wrapped_keys


def head_or_bn_target(layer, param, is_bn):
    """(layer, variable, transpose) for the classifier "fc" or a BatchNorm layer
    (is_bn(layer) says which layers are BNs), else None."""
    if layer == "fc":
        return "fc", {"weight": "kernel", "bias": "bias"}[param], \
            ((1, 0) if param == "weight" else None)
    if is_bn(layer):
        return layer, BN[param], None
    return None
