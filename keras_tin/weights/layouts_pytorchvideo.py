"""The key layout of pytorchvideo's ResNet-style checkpoints (facebookresearch/pytorchvideo
model zoo, e.g. R2PLUS1D_16x4_R50.pyth), mapped onto keras_tin's R(2+1)D-50
(keras_tin/applications/video3d/r2plus1d_r50.py).

The .pyth files are PySlowFast training checkpoints, a torch.save'd dict whose
"model_state" holds the state dict (pytorchvideo/models/hub/r2plus1d.py loads
checkpoint["model_state"]); pth_reader.extract_state_dict takes it from there. The Net has
`blocks` (a ModuleList):

    blocks.0.conv.weight (64, 3, 1, 7, 7), blocks.0.norm.*               -> stem_conv, stem_bn
    blocks.{s}.res_blocks.{i}.branch1_conv.weight, branch1_norm.*   (s = 1..4)
                                            -> res{s+1}_{i}_shortcut_conv / _shortcut_bn
    blocks.{s}.res_blocks.{i}.branch2.
        conv_a.weight (C, I, 1, 1, 1), norm_a.*        -> res{s+1}_{i}_conv_a, _bn_a
        conv_b.conv_t.weight (C, C, 3, 1, 1), conv_b.norm.*  -> _conv_t, _bn_t
        conv_b.conv_xy.weight (C, C, 1, 3, 3), norm_b.*      -> _conv_xy, _bn_b
        conv_c.weight (4C, C, 1, 1, 1), norm_c.*       -> _conv_c, _bn_c
    blocks.5.proj.{weight, bias} (400, 2048)                             -> fc

Conv3d weights (O, I, t, h, w) go to Keras Conv3D kernels (t, h, w, I, O). A DataParallel
"module." prefix is removed; "num_batches_tracked" entries are ignored.
"""

import re

from keras_tin.weights import layout_rules

LAYOUT = "pytorchvideo"

_BLOCK = r"^blocks\.([1-9])\.res_blocks\.(\d+)\."


def _block(suffix):
    return lambda m: f"res{int(m[1]) + 1}_{m[2]}_{suffix}"


RULES = (
    (re.compile(r"^blocks\.0\.conv\.(weight)$"), lambda m: "stem_conv", "conv"),
    (re.compile(r"^blocks\.0\.norm\.(\w+)$"), lambda m: "stem_bn", "bn"),
    (re.compile(_BLOCK + r"branch1_conv\.(weight)$"), _block("shortcut_conv"), "conv"),
    (re.compile(_BLOCK + r"branch1_norm\.(\w+)$"), _block("shortcut_bn"), "bn"),
    (re.compile(_BLOCK + r"branch2\.conv_a\.(weight)$"), _block("conv_a"), "conv"),
    (re.compile(_BLOCK + r"branch2\.norm_a\.(\w+)$"), _block("bn_a"), "bn"),
    (re.compile(_BLOCK + r"branch2\.conv_b\.conv_t\.(weight)$"), _block("conv_t"), "conv"),
    (re.compile(_BLOCK + r"branch2\.conv_b\.norm\.(\w+)$"), _block("bn_t"), "bn"),
    (re.compile(_BLOCK + r"branch2\.conv_b\.conv_xy\.(weight)$"), _block("conv_xy"), "conv"),
    (re.compile(_BLOCK + r"branch2\.norm_b\.(\w+)$"), _block("bn_b"), "bn"),
    (re.compile(_BLOCK + r"branch2\.conv_c\.(weight)$"), _block("conv_c"), "conv"),
    (re.compile(_BLOCK + r"branch2\.norm_c\.(\w+)$"), _block("bn_c"), "bn"),
    (re.compile(r"^blocks\.\d+\.proj\.(weight|bias)$"), lambda m: "fc", "dense"),
)
_SIGNATURE = re.compile(r"^(?:module\.)?blocks\.(?:0\.conv\.weight|\d+\.res_blocks\.\d+\."
                        r"branch2\.conv_b\.conv_(?:t|xy)\.weight)$")


def looks_like_pytorchvideo_r2plus1d(keys):
    """True for a state dict of pytorchvideo's R(2+1)D (blocks.*.branch2.conv_b.conv_t)."""
    return any(_SIGNATURE.match(k) for k in keys) and any(
        ".branch2.conv_b.conv_t." in k for k in keys)


def canonicalize(state_dict, layout=None):
    """Rewrites a pytorchvideo R(2+1)D state dict to "<keras layer>:<param>" names. Returns
    (canonical dict, layout); ValueError listing every key no rule maps."""
    if layout not in (None, LAYOUT):
        raise ValueError(f"A pytorchvideo checkpoint has layout {LAYOUT!r}. Received: "
                         f"layout={layout!r}")
    canonical, _ = layout_rules.rewrite(
        state_dict, RULES, "a keras_tin R(2+1)D-50 (pytorchvideo layout: blocks.0.conv, "
        "blocks.S.res_blocks.I.branch1_conv / branch2.conv_a, conv_b.conv_t, conv_b.conv_xy, "
        "conv_c, blocks.5.proj)")
    return canonical, LAYOUT


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(
        layer, param, lambda name: name == "stem_bn" or re.search(r"_bn(_[a-z])?$", name)
        is not None)
    if target:
        return target
    return layer, "kernel", (2, 3, 4, 1, 0)  # (O, I, t, h, w) -> (t, h, w, I, O)
