"""Key layout of mmaction2's R(2+1)D-34 checkpoints (mmaction/models/backbones/
resnet2plus1d.py ResNet2Plus1d on resnet3d.py ResNet3d, conv_cfg Conv2plus1d; head
I3DHead `fc_cls`; configs/recognition/r2plus1d), mapped onto keras_tin's
R2Plus1D34(variant="mmaction2").

mmaction2 wraps every conv in an mmcv ConvModule (`conv`, `bn`); with conv_cfg Conv2plus1d
the `conv` is a Conv2plus1d (conv_s, bn_s, conv_t):

    backbone.conv1.conv.{conv_s, bn_s, conv_t}.*, backbone.conv1.bn.*
        -> stem_conv_s, stem_bn_s, stem_conv_t, stem_bn
    backbone.layerL.b.convK.conv.{conv_s, bn_s, conv_t}.*, backbone.layerL.b.convK.bn.*
        -> layer{L}_{b}_convK_s, _bnK_s, _convK_t, _bnK          (b from 0, as mmaction2)
    backbone.layerL.b.downsample.conv.{conv_s, bn_s, conv_t}.*, .downsample.bn.*
        -> layer{L}_{b}_downsample_conv_s, _downsample_bn_s, _downsample_conv_t, _downsample_bn
    cls_head.fc_cls.{weight, bias} -> fc

The v1.0 files hold {"meta", "state_dict", ...} (pth_reader reads state_dict). A
DataParallel "module." prefix is removed; num_batches_tracked is ignored.
"""

import re

from keras_tin.weights import layout_rules

LAYOUT = "mmaction2_r2plus1d"
_B = r"backbone\.layer([1-4])\.(\d+)"
_PART = {"conv_s": ("conv", "_s"), "bn_s": ("bn", "_s"), "conv_t": ("conv", "_t")}
_RULES = (
    (re.compile(r"^backbone\.conv1\.conv\.(conv_s|conv_t)\.(weight)$"),
     lambda m: f"stem_conv{_PART[m[1]][1]}", "conv"),
    (re.compile(r"^backbone\.conv1\.conv\.bn_s\.(\w+)$"), lambda m: "stem_bn_s", "bn"),
    (re.compile(r"^backbone\.conv1\.bn\.(\w+)$"), lambda m: "stem_bn", "bn"),
    (re.compile(rf"^{_B}\.conv([12])\.conv\.(conv_s|conv_t)\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}{_PART[m[4]][1]}", "conv"),
    (re.compile(rf"^{_B}\.conv([12])\.conv\.bn_s\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}_s", "bn"),
    (re.compile(rf"^{_B}\.conv([12])\.bn\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(rf"^{_B}\.downsample\.conv\.(conv_s|conv_t)\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_conv{_PART[m[3]][1]}", "conv"),
    (re.compile(rf"^{_B}\.downsample\.conv\.bn_s\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_bn_s", "bn"),
    (re.compile(rf"^{_B}\.downsample\.bn\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_downsample_bn", "bn"),
    (re.compile(r"^cls_head\.fc_cls\.(weight|bias)$"), lambda m: "fc", "head"),
)
DESCRIBE = ("a keras_tin R(2+1)D-34 (mmaction2 layout: backbone.conv1.conv.{conv_s, bn_s, "
            "conv_t}.*, backbone.layerL.b.convK.{conv.conv_s, conv.bn_s, conv.conv_t, bn}.*, "
            "backbone.layerL.b.downsample.*, cls_head.fc_cls.*)")


def looks_like(keys):
    """True for an mmaction2 (2+1)D checkpoint: backbone.* keys with Conv2plus1d convs."""
    return any(re.search(r"^(?:module\.)?backbone\..*\.conv\.conv_[st]\.weight$", k)
               for k in keys)


def canonicalize(state_dict, layout=None):
    """Rewrites the state dict to "<keras layer>:<param>" names; (canonical dict, layout).
    Raises ValueError listing every key no rule maps, and for another layout name."""
    if layout not in (None, LAYOUT):
        raise ValueError(f"An mmaction2 R(2+1)D checkpoint has layout {LAYOUT!r}. "
                         f"Received: layout={layout!r}")
    out, _ = layout_rules.rewrite(state_dict, _RULES, DESCRIBE)
    return out, LAYOUT
