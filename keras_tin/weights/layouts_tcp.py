"""The key layout of the TCPNet checkpoints (ZilinGao/Temporal-attentive-Covariance-Pooling-
Networks-for-Video-Recognition), mapped onto keras_tin's TCP networks (TCPResNet50,
TCPResNet152, TemporalResNet(..., pooling="tcp"); keras_tin/layers/tcp.py).

The release saves the TSN wrapper (ops/models.py) under DataParallel, {"state_dict": ...}:

    module.base_model.conv1.weight, bn1.*, layerL.b.{conv1-3, bn1-3, downsample.0/1}.*
                                        the ResNet-50 (torchvision v1.5 names) -> conv1, bn1,
                                        layerL_b_conv1, ..., layerL_b_downsample_conv / _bn
    module.base_model.bn_data.*, bn2.*  the pre-activation ResNet-152's input BN and final
                                        BN (its blocks: bn1-3 / conv1-3 / downsample.0 only)
    module.base_model.TCP.layer_reduce{1,2}.weight, layer_reduce_bn{1,2}.*
                                        -> tcp_reduce{1,2}, tcp_reduce_bn{1,2}
    module.base_model.TCP.TCP_att.TSA.conv_phi_1 / conv_phi_2 / conv_phi0.{weight, bias}
                                        -> tcp_tsa phi_1 / phi_2 / phi_0 kernel, bias
    module.base_model.TCP.TCP_att.TSA.norm.*   -> tcp_tsa_bn
    module.base_model.TCP.TCP_att.TCA.g1 / g2.{weight, bias}  -> tcp_tca g1 / g2
    module.base_model.TCP.TCP_att.conv_1d.{weight (d, d, k, 1, 1), bias} -> tcp_conv_1d
    module.new_fc.{weight, bias}        -> fc

Older files carry the repository's earlier names, which its ops/keys_mapping.py renames
when resuming (keys_mapping_old_resnet / _old_tea): `layer4.iSQRT.` (or `iSQRT.`) for
`TCP.`, and inside it att_module.conv_1 / conv_2 for TCP_att.TCA.g1 / g2,
att_module.sp_att.conv_theta / conv_phi / conv_g for TCP_att.TSA.conv_phi_1 / conv_phi_2 /
conv_phi0, att_module.sp_att.* for TCP_att.TSA.*, att_module.* for TCP_att.*; and
`base_model.classifier.*` for the classifier `new_fc.*`. Both spellings are read (`spelling`
says which the file used). "module." and "base_model." are optional; "num_batches_tracked"
entries are ignored.

Canonical names are "<keras layer>:<torch parameter>", the TSA / TCA convs as
"tcp_tsa/phi_1:weight", "tcp_tca/g1:bias"; keras_target gives the Keras variable and the
transpose: Conv2d (O, I, kh, kw) -> (kh, kw, I, O), the TSA / TCA 1x1 convs (O, I, 1, 1)
(stored here as (O, I)) -> (I, O), the temporal Conv3d (O, I, k, 1, 1) (stored as (O, I, k))
-> (k, I, O), Linear (O, I) -> (I, O).
"""

import re

from keras_tin.weights import layout_rules
from keras_tin.weights.layout_rules import BLOCK as _BLOCK

LAYOUT = "tcpnet"
_TSA_CONVS = {"conv_phi_1": "phi_1", "conv_phi_2": "phi_2", "conv_phi0": "phi_0"}
_RULES = layout_rules.STEM_AND_DOWNSAMPLE_RULES + (
    (re.compile(rf"^{_BLOCK}\.conv([1-3])\.(weight)$"),
     lambda m: f"layer{m[1]}_{m[2]}_conv{m[3]}", "conv"),
    (re.compile(rf"^{_BLOCK}\.bn([1-3])\.(\w+)$"),
     lambda m: f"layer{m[1]}_{m[2]}_bn{m[3]}", "bn"),
    (re.compile(r"^(bn_data|bn2)\.(\w+)$"), lambda m: m[1], "bn"),
    (re.compile(r"^TCP\.layer_reduce([12])\.(weight)$"), lambda m: f"tcp_reduce{m[1]}", "conv"),
    (re.compile(r"^TCP\.layer_reduce_bn([12])\.(\w+)$"), lambda m: f"tcp_reduce_bn{m[1]}", "bn"),
    (re.compile(r"^TCP\.TCP_att\.TSA\.(conv_phi_1|conv_phi_2|conv_phi0)\.(weight|bias)$"),
     lambda m: f"tcp_tsa/{_TSA_CONVS[m[1]]}", "dense"),
    (re.compile(r"^TCP\.TCP_att\.TSA\.norm\.(\w+)$"), lambda m: "tcp_tsa_bn", "bn"),
    (re.compile(r"^TCP\.TCP_att\.TCA\.(g1|g2)\.(weight|bias)$"), lambda m: f"tcp_tca/{m[1]}",
     "dense"),
    (re.compile(r"^TCP\.TCP_att\.conv_1d\.(weight|bias)$"), lambda m: "tcp_conv_1d", "tconv"),
)
# Old spelling -> new, inside the TCP module (ops/keys_mapping.py's candidates, in its order).
_OLD_ATT = (("att_module.conv_1.", "TCP_att.TCA.g1."), ("att_module.conv_2.", "TCP_att.TCA.g2."),
            ("att_module.sp_att.conv_theta.", "TCP_att.TSA.conv_phi_1."),
            ("att_module.sp_att.conv_phi.", "TCP_att.TSA.conv_phi_2."),
            ("att_module.sp_att.conv_g.", "TCP_att.TSA.conv_phi0."),
            ("att_module.sp_att.", "TCP_att.TSA."), ("att_module.", "TCP_att."))
_OLD_TCP = re.compile(r"(^|\.)(?:layer4\.)?iSQRT\.")
_OLD_HEAD = re.compile(r"(^|\.)base_model\.classifier\.")
_TCP_KEY = re.compile(r"(^|\.)(TCP|iSQRT)\.")
_BN_LAYER = re.compile(r"^(?:bn_data|bn1|bn2|.*_(?:bn[1-3]|downsample_bn)|tcp_reduce_bn[12]|"
                       r"tcp_tsa_bn)$")


def looks_like_tcp(keys):
    """True for a state dict holding a TCP head (either spelling)."""
    return any(_TCP_KEY.search(key) for key in keys)


def is_old_spelling(keys):
    return any("iSQRT." in key or "att_module." in key or _OLD_HEAD.search(key)
               for key in keys)


def modernise(key):
    """A key in the repository's current spelling (see the module docstring)."""
    key = _OLD_HEAD.sub(r"\1new_fc.", key)
    if not _OLD_TCP.search(key):
        return key
    key = _OLD_TCP.sub(r"\1TCP.", key)
    for old, new in _OLD_ATT:
        if old in key:
            return key.replace(old, new)
    return key


def _reshape(canonical, value):
    """The TSA / TCA 1x1 conv weights (O, I, 1, 1) -> (O, I); the temporal conv (O, I, k,
    1, 1) -> (O, I, k); other shapes are left to be reported as mismatches."""
    layer, param = canonical.split(":")
    if param != "weight":
        return value
    if "/" in layer and value.ndim == 4 and value.shape[2:] == (1, 1):
        return value[:, :, 0, 0]
    if layer == "tcp_conv_1d" and value.ndim == 5 and value.shape[3:] == (1, 1):
        return value[:, :, :, 0, 0]
    return value


def canonicalize(state_dict, layout=None):
    """Rewrites a TCPNet state dict (either spelling) to "<keras layer>:<param>" names.

    Returns (canonical dict, layout, spelling): spelling "current" or "old" (the keys the
    file used). Raises ValueError listing every key no rule maps."""
    if layout not in (None, LAYOUT):
        raise ValueError(f"A TCPNet checkpoint has layout {LAYOUT!r}. Received: "
                         f"layout={layout!r}")
    spelling = "old" if is_old_spelling(state_dict) else "current"
    renamed = {}
    for key, value in state_dict.items():
        new = modernise(key)
        if new in renamed:
            raise ValueError(f"Two checkpoint keys mean {new!r} (the second: {key!r}).")
        renamed[new] = value
    out, _ = layout_rules.rewrite(
        renamed, _RULES, f"a keras_tin TCP network ({LAYOUT} layout: module.base_model."
        f"{{conv1, bn1, layerL.b.*, TCP.*}} and module.new_fc.*)", _reshape)
    return out, LAYOUT, spelling


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, _BN_LAYER.match)
    if target:
        return target
    if "/" in layer:  # a TSA / TCA 1x1 conv held by a TCP layer
        layer, conv = layer.split("/")
        if param == "bias":
            return layer, f"{conv}_bias", None
        return layer, f"{conv}_kernel", (1, 0)
    if layer == "tcp_conv_1d":
        return (layer, "bias", None) if param == "bias" else (layer, "kernel", (2, 1, 0))
    return layer, "kernel", (2, 3, 1, 0)
