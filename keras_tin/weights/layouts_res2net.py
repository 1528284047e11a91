"""Key layouts of Res2Net-50 (26w x 4s) checkpoints, mapped onto keras_tin's Res2Net blocks
(TemporalResNet(block="res2net"): TEARes2Net50, TSNRes2Net50, architecture "res2net50").

One layout, "authors": the key names of the publishers' own code, in two forms told apart
by the keys:
- the TSN wrapper of the TEA code (Phoenix1327/tea-action-recognition ops/models.py with
  ops/tea50_8f.py, trained under DataParallel):
      module.base_model.conv1.weight, module.base_model.bn1.*,
      module.base_model.layerL.b.{conv1, bn1, convs.i, bns.i, conv3, bn3,
          downsample.0, downsample.1}.*,
      TEA: module.base_model.layerL.b.me.{conv1, bn1, conv2, conv3, bn3}.*,
           module.base_model.layerL.b.shifts.i.conv.weight,
      module.new_fc.* (with dropout 0 the TSN keeps the classifier as base_model.fc.*);
  the "module." prefix is optional.
- the Res2Net authors' ImageNet model (Res2Net/Res2Net-PretrainedModels res2net.py,
  res2net50_26w_4s-06e79181.pth): the same backbone keys without module.base_model, and
  fc.* (1000 classes).

Every key is rewritten to "<keras layer>:<torch parameter>" ("layer1_0_convs_2:weight",
"layer3_1_me_bn3:running_var", "layer2_0_shifts_3:weight", "fc:bias"); keras_target maps
that to the Keras variable and the transpose: Conv2d [out, in, kh, kw] -> [kh, kw, in,
out], the ME's depthwise Conv2d [C, 1, 3, 3] -> NextFrameDifference [3, 3, C, 1], the
temporal Conv1d [C, 1, k] (stored here as [C, k]) -> TemporalDepthwiseConv1D [k, C],
Linear [out, in] -> [in, out].
"""

import re

from keras_tin.weights import layout_rules
from keras_tin.weights.layout_rules import BLOCK as _BLOCK

LAYOUTS = ("authors",)
# (pattern on a stripped key, keras layer template from its groups, conv kind or "bn")
_RULES = layout_rules.STEM_AND_DOWNSAMPLE_RULES + (
    (re.compile(rf"^{_BLOCK}\.conv([13])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bn([13])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(rf"^{_BLOCK}\.convs\.([0-2])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_convs_{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bns\.([0-2])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bns_{m[3]}", "bn"),
    (re.compile(rf"^{_BLOCK}\.me\.conv([13])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_me_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.me\.conv2\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_me_conv2", "depthwise"),
    (re.compile(rf"^{_BLOCK}\.me\.bn([13])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_me_bn{m[3]}", "bn"),
    (re.compile(rf"^{_BLOCK}\.shifts\.([0-3])\.conv\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_shifts_{m[3]}", "temporal"),
)
_RES2NET_KEY = re.compile(r"(?:^|\.)layer[1-4]\.\d+\.(?:convs|bns|shifts|me)\.")
_TEA_KEY = re.compile(r"(?:^|\.)layer[1-4]\.\d+\.(?:me|shifts)\.")
_SHIFT_LAYER = re.compile(r"_shifts_\d$")


def looks_like_res2net(keys):
    """True for a Res2Net-block state dict (its groups' convs.i / bns.i, or TEA's me /
    shifts)."""
    return any(_RES2NET_KEY.search(key) for key in keys)


def canonicalize(state_dict, layout=None):
    """Rewrites a Res2Net state dict to "<keras layer>:<param>" names.

    Returns (canonical dict, layout, temporal, form): temporal "tea" when the blocks hold
    TEA's me / shifts, "tsn" for a TSN-wrapper checkpoint without them, None for the Res2Net
    ImageNet model (a backbone); form "tsn-wrapper" or "imagenet". Raises ValueError listing
    every key no rule maps.
    """
    if layout is None:
        layout = "authors"
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} for a Res2Net checkpoint. "
                         f"Received: layout={layout!r}")
    out, wrapped_keys = layout_rules.rewrite(
        state_dict, _RULES, f"a keras_tin Res2Net-50 ({layout} layout: TEA's "
        f"module.base_model.* / module.new_fc.*, or the Res2Net ImageNet conv1 / layerL.b.* / "
        f"fc keys)", _reshape)
    tea = any(_TEA_KEY.search(key) for key in state_dict)
    form = "tsn-wrapper" if wrapped_keys else "imagenet"
    temporal = "tea" if tea else ("tsn" if wrapped_keys else None)
    return out, layout, temporal, form


_BN_LAYER = re.compile(r"^(?:bn1|.*_(?:bn[13]|bns_\d|downsample_bn))$")


def _reshape(canonical, value):
    """A temporal Conv1d [C, 1, k] is stored as [C, k]."""
    if _SHIFT_LAYER.search(canonical.split(":")[0]) and value.ndim == 3 and value.shape[1] == 1:
        return value[:, 0, :]
    return value


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, _BN_LAYER.match)
    if target:
        return target
    if layer.endswith("_me_conv2"):
        return layer, "kernel", (2, 3, 0, 1)  # [C, 1, 3, 3] -> [3, 3, C, 1]
    if _SHIFT_LAYER.search(layer):
        return layer, "kernel", (1, 0)  # [C, k] -> [k, C]
    return layer, "kernel", (2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
