"""The training recipe: one dataclass shared by `keras-tin train` and examples/.

Defaults are the paper's (Setup and Implementation Details): ResNet-50, 8 frames,
224 px, SGD with momentum 0.9, weight decay 5e-4, initial learning rate 0.005
divided by 10 at epochs 10 and 20, 25 epochs, dropout 0.5, partial BN, and
gradient clipping (global norm 20, as in the TSN/TSM code TIN builds on).
"""

import argparse
import dataclasses
import json
import os

MULTILABEL_DATASETS = ("mmit",)
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu", "data_parallel")


@dataclasses.dataclass
class TrainConfig:
    # data
    dataset: str = "folder"
    root: str = ""
    train_split: str = "train"
    val_split: str = "val"          # "" trains without validation
    fold: int = 1                   # UCF101 / HMDB51 split
    frames: int = 8
    image_size: int = 224
    sampling: str = "segment"
    flip: bool = None               # default: no flip for Something-Something and Jester
    decoder: str = "opencv"
    cache: bool = False
    # model
    temporal: str = "tin"
    depth: int = 50
    base_filters: int = 64
    weights: str = None             # initialisation: pretrained name or file (ImageNet/Kinetics)
    dropout: float = 0.5
    partial_bn: bool = True
    implementation: str = "auto"
    multilabel: bool = None         # default: True for "mmit" (sigmoid + binary cross-entropy)
    # optimisation
    epochs: int = 25
    batch_size: int = 8             # per replica; the global batch is batch_size * replicas
    lr: float = 0.005
    lr_steps: tuple = (10, 20)
    lr_decay: float = 0.1
    lr_batch_size: int = None       # the global batch `lr` is tuned for (default batch_size)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clipnorm: float = 20.0          # global gradient norm; 0 disables
    steps_per_epoch: int = None
    validation_steps: int = None
    # running
    strategy: str = "default"
    output_dir: str = "runs/tin"
    tensorboard: bool = False
    seed: int = 0
    verbose: int = 1

    def __post_init__(self):
        self.lr_steps = tuple(int(s) for s in (self.lr_steps or ()))
        if self.multilabel is None:
            self.multilabel = self.dataset in MULTILABEL_DATASETS
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}. "
                             f"Received: strategy={self.strategy!r}")
        if self.frames < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("frames, batch_size and epochs must be positive. Received: "
                             f"frames={self.frames}, batch_size={self.batch_size}, "
                             f"epochs={self.epochs}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["lr_steps"] = list(self.lr_steps)
        return d

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def read_config_file(path):
    """A dict of TrainConfig fields from JSON, or YAML when PyYAML is installed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"reading {path!r} needs PyYAML (pip install pyyaml); "
                              "or write the config as JSON") from None
        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown keys in {path}: {unknown}. Known keys: {sorted(FIELDS)}")
    return values


def _bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false. Received: {text!r}")


def _type_of(field):
    kind = {"flip": bool, "multilabel": bool, "weights": str, "lr_batch_size": int,
            "steps_per_epoch": int, "validation_steps": int}.get(field.name)
    if kind is None:
        kind = type(field.default)
    return kind


def add_config_arguments(parser, defaults=None):
    """One ``--flag`` per TrainConfig field (default None: the file, then `defaults`, wins)."""
    defaults = defaults or TrainConfig()
    parser.add_argument("--config", help="JSON (or YAML with PyYAML) file of these settings; "
                                         "flags given on the command line override it")
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        kind = _type_of(field)
        help_text = f"default {default!r}"
        if kind is bool:
            parser.add_argument(flag, type=_bool, default=None, metavar="BOOL", help=help_text)
        elif kind is tuple:
            parser.add_argument(flag, type=int, nargs="*", default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def config_from_args(args, defaults=None):
    """`defaults` < ``--config`` file < explicit flags."""
    values = (defaults or TrainConfig()).to_dict()
    values["multilabel"] = None  # re-derived from the dataset unless set explicitly
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    for name in FIELDS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return TrainConfig(**values)


def output_path(config, *parts):
    return os.path.join(config.output_dir, *parts)
