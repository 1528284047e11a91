"""torchvision ImageNet ResNet keys (conv1.weight, layerL.b.convN.weight, ..., fc.*), as
canonical-name rules: the canonical naming is torchvision's, so the rules are the identity on
the keys they accept. Used to initialise a backbone; also the inner names of the MIT TSM and
TIN authors' releases (module.base_model.*).
"""

BLOCK = r"(layer[1-4]\.\d+)"

RULES = [
    (r"^conv1\.weight$", r"conv1.weight"),
    (r"^bn1\.(\w+)$", r"bn1.\1"),
    (rf"^{BLOCK}\.conv([1-3])\.weight$", r"\1.conv\2.weight"),
    (rf"^{BLOCK}\.bn([1-3])\.(\w+)$", r"\1.bn\2.\3"),
    (rf"^{BLOCK}\.downsample\.([01])\.(\w+)$", r"\1.downsample.\2.\3"),
    (r"^fc\.(weight|bias)$", r"fc.\1"),
]
