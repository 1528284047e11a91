"""Key layout of MSNet checkpoints (the authors' code, arunos728/MotionSqueeze resnet_TSM.py
inside the TSN wrapper of models.py, trained under DataParallel), mapped onto keras_tin's
MSNet (keras_tin/layers/motion_squeeze.py: MSNetResNet18/50, TemporalResNet(temporal=
"msnet")). No MSNet checkpoint was published (the repository's issue #8); the layout is
read from the code (/work/shared/ZOO_SPEC.md section 1):

    module.base_model.conv1.weight, bn1.*                       -> conv1, bn1
    module.base_model.layerL.b.{conv1, bn1, conv2, bn2, conv3, bn3}.*
                                                                -> layerL_b_convN / _bnN
    module.base_model.layerL.b.downsample.{0, 1}.*              -> _downsample_conv / _bn
    module.base_model.chnl_reduction.0.weight (64, C, 1, 1), .1.*
                                                                -> layer2_ms_reduce, _bn
    module.base_model.flow_refinement.convI.0.weight (c, 1, k, k) -> layer2_ms_refineI_dw
    module.base_model.flow_refinement.convI.1.*                 -> layer2_ms_refineI_dw_bn
    module.base_model.flow_refinement.convI.3.weight (o, c, 1, 1) -> layer2_ms_refineI_pw
    module.base_model.flow_refinement.convI.4.*                 -> layer2_ms_refineI_pw_bn
    module.new_fc.{weight (K, C, 1), bias}                      -> fc (the TSN classifier)
    module.base_model.fc1.{weight (K, C, 1), bias}              -> fc (dropout 0: no new_fc)
    module.base_model.bn2.*                                     ignored: an unused
                                                                BatchNorm2d(128) of the
                                                                authors' ResNet
The "module." and "base_model." prefixes are optional. A plain torchvision ImageNet ResNet
(conv1, bn1, layerL.b.*, fc (1000, C)) is the "torchvision" form: it initialises the
backbone and the MS module keeps its initialisation, as the authors' resnet50(True) does.
"""

import re

from keras_tin.weights import layout_rules
from keras_tin.weights.layout_rules import BLOCK as _BLOCK

LAYOUT = "authors"
LAYOUTS = (LAYOUT, "torchvision")
MS_STAGE = "layer2"
_RULES = layout_rules.STEM_AND_DOWNSAMPLE_RULES + (
    (re.compile(rf"^{_BLOCK}\.conv([1-3])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bn([1-3])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(r"^chnl_reduction\.0\.(weight)$"), lambda m: f"{MS_STAGE}_ms_reduce", "conv"),
    (re.compile(r"^chnl_reduction\.1\.(\w+)$"), lambda m: f"{MS_STAGE}_ms_reduce_bn", "bn"),
    (re.compile(r"^flow_refinement\.conv([1-4])\.0\.(weight)$"),
     lambda m: f"{MS_STAGE}_ms_refine{m[1]}_dw", "depthwise"),
    (re.compile(r"^flow_refinement\.conv([1-4])\.1\.(\w+)$"),
     lambda m: f"{MS_STAGE}_ms_refine{m[1]}_dw_bn", "bn"),
    (re.compile(r"^flow_refinement\.conv([1-4])\.3\.(weight)$"),
     lambda m: f"{MS_STAGE}_ms_refine{m[1]}_pw", "conv"),
    (re.compile(r"^flow_refinement\.conv([1-4])\.4\.(\w+)$"),
     lambda m: f"{MS_STAGE}_ms_refine{m[1]}_pw_bn", "bn"),
    (re.compile(r"^fc1\.(weight|bias)$"), lambda m: "fc", "head"),
)
_MS_KEY = re.compile(r"(?:^|\.)(?:chnl_reduction|flow_refinement)\.")
_UNUSED = re.compile(r"^bn2\.\w+$")  # the authors' ResNet.bn2, never called
# Keras layers of the MS module (kept at their initialisation by an ImageNet backbone).
MS_LAYER = re.compile(r"^layer\d+_ms_\w+$")
_BN_LAYER = re.compile(r"^(?:bn1|.*_(?:bn[1-3]|downsample_bn|_?dw_bn|pw_bn|reduce_bn))$")


def looks_like_msnet(keys):
    """True for a state dict holding a MotionSqueeze module."""
    return any(_MS_KEY.search(key) for key in keys)


def canonicalize(state_dict, layout=None):
    """Rewrites an MSNet (or torchvision ResNet) state dict to "<keras layer>:<param>" names.

    Returns (canonical dict, layout, form): form "msnet" when it holds the MS module,
    "imagenet" for a plain ResNet backbone, "tsn-wrapper" for a wrapped ResNet without
    it (a TSM/TSN video network, which convert_msnet refuses). Raises ValueError listing
    every key no rule maps.
    """
    if layout not in (None,) + LAYOUTS:
        raise ValueError(f"An MSNet checkpoint has layout {LAYOUT!r} (or 'torchvision' for an "
                         f"ImageNet backbone). Received: layout={layout!r}")
    kept = {key: value for key, value in state_dict.items()
            if not _UNUSED.match(layout_rules.strip(key)[0])}
    out, wrapped_keys = layout_rules.rewrite(
        kept, _RULES, f"a keras_tin MSNet ({LAYOUT} layout: module.base_model.{{conv1, bn1, "
        f"layerL.b.*, chnl_reduction.*, flow_refinement.convI.*}}, module.new_fc.*)", _reshape)
    if looks_like_msnet(state_dict):
        form = "msnet"
    else:
        form = "tsn-wrapper" if wrapped_keys else "imagenet"
    return out, LAYOUT if form != "imagenet" else "torchvision", form


def _reshape(canonical, value):
    """The TSN Conv1d classifier (K, C, 1) -> (K, C)."""
    if canonical == "fc:weight" and value.ndim == 3 and value.shape[-1] == 1:
        return value[..., 0]
    return value


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, _BN_LAYER.match)
    if target:
        return target
    if layer.endswith("_dw"):
        return layer, "kernel", (2, 3, 0, 1)  # [C, 1, k, k] -> [k, k, C, 1]
    return layer, "kernel", (2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
