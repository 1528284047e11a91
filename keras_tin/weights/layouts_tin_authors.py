"""The TIN authors' release (X-Temporal, module.base_model.* with torchvision names): the
interlace modules of a block's first conv as conv1.net1.biasnet (OffsetNet) /
conv1.net1.weightnet (WeightNet) + conv1.net2 (the conv), head module.new_fc.*; rules to the
canonical names of layouts.py (applied after module. and base_model. are stripped).
"""

BLOCK = r"(layer[1-4]\.\d+)"

RULES = [
    (rf"^{BLOCK}\.conv1\.net1\.biasnet\.net\.conv\.(weight|bias)$", r"\1.tin.offset_conv.\2"),
    (rf"^{BLOCK}\.conv1\.net1\.biasnet\.net\.fc\.(weight|bias)$", r"\1.tin.offset_fc1.\2"),
    (rf"^{BLOCK}\.conv1\.net1\.biasnet\.net\.lastlayer\.(weight|bias)$", r"\1.tin.offset_fc2.\2"),
    (rf"^{BLOCK}\.conv1\.net1\.weightnet\.net\.lastlayer\.(weight|bias)$",
     r"\1.tin.weight_conv.\2"),
    (rf"^{BLOCK}\.conv1\.net2\.weight$", r"\1.conv1.weight"),
    (r"^new_fc\.(weight|bias)$", r"fc.\1"),
]
