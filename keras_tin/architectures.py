"""Architecture names: 'tin_resnet50', 'tada2d_resnet50', 'tea_res2net50', 'tsm_mobilenetv2'.

One grammar for the CLI (`--arch`), the converters and the weights manifest; this module
imports nothing heavy (the CLI's --help and the config check use it).

    [temporal_][eca_]backbone[depth]

temporal: a registered temporal kind (tin, tsm, tsn, tada2d, tea, stm, ...); omitted for
an image backbone (resnet50, res2net50, eca_resnet50: a TSN network of one frame).
eca_: ECA channel attention in every block (`channel_attention="eca"`).
backbone: resnet (depth 18/34/50/101), res2net (depth 50), mobilenetv2 (no depth).
"""

import dataclasses
import re

BACKBONES = {"resnet": (18, 34, 50, 101), "res2net": (50,), "mobilenetv2": (None,)}
_PATTERN = re.compile(r"^(?:(?P<temporal>[a-z][a-z0-9]*)_)?(?:(?P<eca>eca)_)?"
                      r"(?P<backbone>resnet|res2net|mobilenetv2)(?P<depth>\d+)?$")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A parsed architecture name. temporal is None for an image backbone."""
    name: str
    temporal: str
    backbone: str
    depth: int
    channel_attention: str = None

    @property
    def image_backbone(self):
        return self.temporal is None

    def constructor_kwargs(self):
        """Keyword arguments of TemporalResNet / TemporalMobileNetV2 beyond temporal, depth."""
        kwargs = {}
        if self.backbone == "res2net":
            kwargs["block"] = "res2net"
        if self.channel_attention:
            kwargs["channel_attention"] = self.channel_attention
        return kwargs


def parse(arch):
    """'tada2d_resnet50' -> Architecture(temporal='tada2d', backbone='resnet', depth=50).

    Only the grammar is checked here; whether the temporal kind is registered and
    defined at that depth is checked when the model is built (TemporalResNet quotes the
    registered kinds)."""
    match = _PATTERN.match(str(arch)) if isinstance(arch, str) else None
    if match:
        temporal, eca = match.group("temporal"), match.group("eca")
        if temporal == "eca" and eca is None:  # "eca_resnet50": the ECA image backbone
            temporal, eca = None, "eca"
        backbone = match.group("backbone")
        depth = int(match.group("depth")) if match.group("depth") else None
        if depth in BACKBONES[backbone] and not (eca and backbone != "resnet"):
            return Architecture(arch, temporal, backbone, depth, eca)
    examples = ("tin_resnet50, tsm_resnet101, tsn_resnet18, tada2d_resnet50, stm_resnet50, "
                "tea_res2net50, tsm_eca_resnet50, tsm_mobilenetv2; image backbones resnet50, "
                "res2net50, eca_resnet50")
    raise ValueError(f"arch must look like temporal_backboneDEPTH ({examples}; backbones "
                     f"resnet 18/34/50/101, res2net 50, mobilenetv2). Received: arch={arch!r}")
