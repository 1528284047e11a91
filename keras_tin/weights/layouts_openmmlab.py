"""OpenMMLab (mmaction2) key layout of the TIN / TSM / TSN ResNets, as canonical-name rules.

mmaction2 recognizers: backbone.* (ConvModule conv/bn pairs; TSM wraps the first conv as
conv1.conv.net, TIN as conv1.conv.net1 (offset_net / weight_net) + net2), cls_head.fc_cls.*.
Non-local TSM (ResNetTSM non_local, NL3DWrapper) moves a wrapped block under
backbone.layerL.b.block.* (read as backbone.layerL.b.*) and adds
backbone.layerL.b.non_local_block.{g.0.conv, theta.conv, phi.0.conv, conv_out.conv,
conv_out.bn}.* (mmcv NonLocal3d). The canonical names are listed in layouts.py; the
MobileNetV2 keys of the same publisher are in layouts_mobilenet.py.
"""

import re

BLOCK = r"(layer[1-4]\.\d+)"

RULES = [
    (r"^backbone\.conv1\.conv\.weight$", r"conv1.weight"),
    (r"^backbone\.conv1\.bn\.(\w+)$", r"bn1.\1"),
    (rf"^backbone\.{BLOCK}\.conv1\.conv\.net1\.offset_net\.(conv|fc1|fc2)\.(weight|bias)$",
     r"\1.tin.offset_\2.\3"),
    (rf"^backbone\.{BLOCK}\.conv1\.conv\.net1\.weight_net\.conv\.(weight|bias)$",
     r"\1.tin.weight_conv.\2"),
    (rf"^backbone\.{BLOCK}\.conv1\.conv\.net2\.weight$", r"\1.conv1.weight"),
    (rf"^backbone\.{BLOCK}\.conv1\.conv\.net\.weight$", r"\1.conv1.weight"),
    (rf"^backbone\.{BLOCK}\.conv([1-3])\.conv\.weight$", r"\1.conv\2.weight"),
    (rf"^backbone\.{BLOCK}\.conv([1-3])\.bn\.(\w+)$", r"\1.bn\2.\3"),
    (rf"^backbone\.{BLOCK}\.downsample\.conv\.weight$", r"\1.downsample.0.weight"),
    (rf"^backbone\.{BLOCK}\.downsample\.bn\.(\w+)$", r"\1.downsample.1.\2"),
    (rf"^backbone\.{BLOCK}\.non_local_block\.(g|phi)\.0\.conv\.(weight|bias)$",
     r"\1.nl.\2.\3"),
    (rf"^backbone\.{BLOCK}\.non_local_block\.(theta|conv_out)\.conv\.(weight|bias)$",
     r"\1.nl.\2.\3"),
    (rf"^backbone\.{BLOCK}\.non_local_block\.conv_out\.bn\.(\w+)$", r"\1.nl.bn.\2"),
    (r"^cls_head\.fc_cls\.(weight|bias)$", r"fc.\1"),
]
# NL3DWrapper: the wrapped block's own keys sit under .block.
WRAPPED = re.compile(rf"^(backbone\.{BLOCK})\.block\.")
NON_LOCAL_CONV = re.compile(r"\.nl\.(g|theta|phi|conv_out)\.weight$")
