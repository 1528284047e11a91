"""Architecture names: 'tin_resnet50', 'tada2d_resnet50', 'tea_res2net50', 'tsm_mobilenetv2'.

One grammar for the CLI (`--arch`), the converters and the weights manifest; this module
imports nothing heavy (the CLI's --help and the config check use it).

    [temporal_][eca_]backbone[depth]

temporal: a registered temporal kind (tin, tsm, tsn, tada2d, tea, stm, tcp = TSN with the
TCP head, ...); omitted for an image backbone (resnet50, res2net50, eca_resnet50: a TSN
network of one frame).
eca_: ECA channel attention in every block (`channel_attention="eca"`).
backbone: resnet (depth 18/34/50/101/152), res2net (depth 50), mobilenetv2 (no depth).

Networks that are not a 2D backbone with a temporal module (the 3D CNNs, SqueezeTime, ...)
are named whole in STANDALONE: name -> "module:function". Adding one is a new file and a
line there; its function takes the Keras-applications keyword arguments (frames,
input_shape, classes, classifier_activation, dropout_rate, weights, name, ...).
"""

import dataclasses
import re

# name -> "module:function" of a network built by a function of its own (a line each).
STANDALONE = {
    "r2plus1d_r50": "keras_tin.applications.video3d.r2plus1d_r50:R2Plus1DResNet50",
    "p3d63": "keras_tin.applications.video3d.p3d:P3D63",
    "p3d131": "keras_tin.applications.video3d.p3d:P3D131",
    "p3d199": "keras_tin.applications.video3d.p3d:P3D199",
    "squeezetime": "keras_tin.applications.squeezetime:SqueezeTime",
    "r2plus1d_18": "keras_tin.applications.video3d.resnet3d:R2Plus1D18",
    "r3d_18": "keras_tin.applications.video3d.resnet3d:R3D18",
    "mc3_18": "keras_tin.applications.video3d.resnet3d:MC3_18",
    "r2plus1d_34": "keras_tin.applications.video3d.resnet3d:R2Plus1D34",  # mmaction2
    "r2plus1d_34_vmz": "keras_tin.applications.video3d.resnet3d:R2Plus1D34VMZ",  # IG-65M
}

# name -> clip sampling `keras-tin train` uses when none is given (default "segment", TSN's):
# the 3D CNNs are trained and published on dense clips of consecutive (strided) frames.
DEFAULT_SAMPLING = {
    "r2plus1d_18": "dense", "r3d_18": "dense", "mc3_18": "dense", "r2plus1d_34": "dense",
    "r2plus1d_34_vmz": "dense",
    "r2plus1d_r50": "dense", "p3d63": "dense", "p3d131": "dense", "p3d199": "dense",
}


def default_sampling(arch):
    """"dense" or "segment": the clip sampling an architecture is trained with by default."""
    return DEFAULT_SAMPLING.get(arch, "segment")


BACKBONES = {"resnet": (18, 34, 50, 101, 152), "res2net": (50,), "mobilenetv2": (None,)}
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
    builder: str = None  # "module:function" of a STANDALONE network

    @property
    def image_backbone(self):
        return self.temporal is None and self.builder is None

    @property
    def standalone(self):
        return self.builder is not None

    def build_function(self):
        """The function building a STANDALONE network (imported on first use)."""
        import importlib
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)

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
    if isinstance(arch, str) and arch in STANDALONE:
        return Architecture(arch, None, arch, None, builder=STANDALONE[arch])
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
    standalone = f"; or one of {', '.join(sorted(STANDALONE))}" if STANDALONE else ""
    raise ValueError(f"arch must look like temporal_backboneDEPTH ({examples}; backbones "
                     f"resnet 18/34/50/101/152, res2net 50, mobilenetv2){standalone}. "
                     f"Received: arch={arch!r}")
