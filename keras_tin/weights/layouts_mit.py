"""The MIT TSM release (mit-han-lab/temporal-shift-module, module.base_model.* with
torchvision names): a shifted block's first conv is wrapped as conv1.net, head
module.new_fc.*; rules to the canonical names of layouts.py (applied after module. and
base_model. are stripped). The MobileNetV2 keys of the same release are in
layouts_mobilenet.py.
"""

BLOCK = r"(layer[1-4]\.\d+)"

RULES = [
    (rf"^{BLOCK}\.conv1\.net\.weight$", r"\1.conv1.weight"),
    (r"^new_fc\.(weight|bias)$", r"fc.\1"),
]
