"""Key layout of torchvision's video ResNets (torchvision/models/video/resnet.py:
r3d_18, mc3_18, r2plus1d_18 and their Kinetics-400 checkpoints), mapped onto keras_tin's
video ResNets (keras_tin.applications.video3d.resnet3d; Keras layer names in blocks3d).

    stem.0.weight (45, 3, 1, 7, 7), stem.1.*, stem.3.weight (64, 45, 3, 1, 1), stem.4.*
        -> stem_conv_s, stem_bn_s, stem_conv_t, stem_bn            (R2Plus1dStem)
    stem.0.weight (64, 3, 3, 7, 7), stem.1.*  -> stem_conv, stem_bn  (BasicStem)
    layerL.b.convK.0.weight       -> layerL_b_convK                 (Conv3DSimple / NoTemporal)
    layerL.b.convK.0.{0,1,3}.*    -> layerL_b_convK_s, _bnK_s, _convK_t   (Conv2Plus1D)
    layerL.b.convK.1.*            -> layerL_b_bnK
    layerL.b.downsample.{0,1}.*   -> layerL_b_downsample_conv, _downsample_bn
    fc.{weight, bias}             -> fc

Which stem a "stem.0" key belongs to is told by the state dict: a stem.3 conv makes it the
(2+1)D stem. A DataParallel "module." prefix is removed; num_batches_tracked is ignored.
VMZ / IG-65M (ig65m-pytorch) builds torchvision's VideoResNet, so its checkpoints have
these keys too (layouts_video3d_vmz.py).
"""

import re

from keras_tin.weights import layout_rules

LAYOUT = "torchvision_video"
_B = r"layer([1-4])\.(\d+)"
_BLOCK_RULES = (
    (re.compile(rf"^{_B}\.conv([12])\.0\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_B}\.conv([12])\.0\.0\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}_s", "conv"),
    (re.compile(rf"^{_B}\.conv([12])\.0\.1\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}_s", "bn"),
    (re.compile(rf"^{_B}\.conv([12])\.0\.3\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}_t", "conv"),
    (re.compile(rf"^{_B}\.conv([12])\.1\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(rf"^{_B}\.downsample\.0\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_conv", "conv"),
    (re.compile(rf"^{_B}\.downsample\.1\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_bn", "bn"),
)
_STEM_2PLUS1D = (
    (re.compile(r"^stem\.0\.(weight)$"), lambda m: "stem_conv_s", "conv"),
    (re.compile(r"^stem\.1\.(\w+)$"), lambda m: "stem_bn_s", "bn"),
    (re.compile(r"^stem\.3\.(weight)$"), lambda m: "stem_conv_t", "conv"),
    (re.compile(r"^stem\.4\.(\w+)$"), lambda m: "stem_bn", "bn"),
)
_STEM_3D = (
    (re.compile(r"^stem\.0\.(weight)$"), lambda m: "stem_conv", "conv"),
    (re.compile(r"^stem\.1\.(\w+)$"), lambda m: "stem_bn", "bn"),
)
_STEM_KEY = re.compile(r"^(?:module\.)?stem\.0\.weight$")
_CONV_KEY = re.compile(r"^(?:module\.)?layer[1-4]\.\d+\.conv1\.0\.")
DESCRIBE = ("a keras_tin video ResNet (torchvision video layout: stem.{0,1,3,4}.*, "
            "layerL.b.convK.0[.0/.1/.3].*, layerL.b.convK.1.*, layerL.b.downsample.{0,1}.*, "
            "fc.*)")


def looks_like(keys):
    """True for a state dict in torchvision's video-ResNet layout: a stem.0 conv and
    Sequential convK modules (a 2-D torchvision ResNet has conv1.weight and
    layerL.b.conv1.weight)."""
    keys = list(keys)
    return any(_STEM_KEY.match(k) for k in keys) and any(_CONV_KEY.match(k) for k in keys)


def rules_for(keys):
    """The rules of a state dict: the stem's depend on whether it has a (2+1)D stem."""
    two_plus_one = any(layout_rules.strip(k)[0].startswith("stem.3.") for k in keys)
    return (_STEM_2PLUS1D if two_plus_one else _STEM_3D) + _BLOCK_RULES


def canonicalize(state_dict, layout=None, name=LAYOUT, accepted=(None, LAYOUT)):
    """Rewrites the state dict to "<keras layer>:<param>" names; (canonical dict, layout).
    Raises ValueError listing every key no rule maps, and for another layout name."""
    if layout not in accepted:
        raise ValueError(f"A torchvision video-ResNet checkpoint has layout {name!r}. "
                         f"Received: layout={layout!r}")
    out, _ = layout_rules.rewrite(state_dict, rules_for(state_dict), DESCRIBE)
    return out, name
