"""The training recipe: one dataclass shared by `keras-tin train` and examples/.

Defaults are the paper's (Setup and Implementation Details): ResNet-50, 8 frames,
224 px, SGD with momentum 0.9, weight decay 5e-4, initial learning rate 0.005
divided by 10 at epochs 10 and 20, 25 epochs, dropout 0.5, partial BN when
fine-tuning from pretrained weights (``partial_bn="auto"``), and gradient clipping
(global norm 20, as in the TSN/TSM code TIN builds on).

Choice-type fields are checked here, so a bad value in a config file fails before
anything is built, with the same message as a bad flag; ``--help`` lists the choices.
"""

import argparse
import dataclasses
import json
import math
import os

MULTILABEL_DATASETS = ("mmit",)
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu", "data_parallel")
# Copies of the lists the data and model code define (tests/test_training_resume_cli.py
# checks they agree): importing those modules here would make `keras-tin train --help` slow.
DATASETS = ("folder", "hmdb51", "jester", "kinetics400", "kinetics600", "mmit", "something-v1",
            "something-v2", "ucf101")
TEMPORAL_MODULES = ("tin", "tsm", "tsn", "tada2d", "tea", "stm", "tcp", "msnet")
DEPTHS = (18, 34, 50, 101, 152)
SAMPLINGS = ("segment", "dense")
DECODERS = ("opencv", "pyav")
IMPLEMENTATIONS = ("auto", "portable", "custom_op")
ON_ERROR = ("skip", "raise")
CHOICES = {"dataset": DATASETS, "temporal": TEMPORAL_MODULES, "depth": DEPTHS,
           "sampling": SAMPLINGS, "decoder": DECODERS, "implementation": IMPLEMENTATIONS,
           "strategy": STRATEGIES, "on_error": ON_ERROR}


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
    sampling: str = None            # default: the architecture's (architectures.default_sampling:
                                    # "dense" for the 3D CNNs, else "segment")
    flip: bool = None               # default: no flip for Something-Something and Jester
    decoder: str = "opencv"
    cache: bool = False
    deterministic: bool = False     # fixed order of decoded videos (reproducible; slower)
    data_service: str = None        # "grpc://host:port": decode on a tf.data service
    # model
    arch: str = None                # e.g. tada2d_resnet50; sets temporal/depth (and backbone)
    temporal: str = "tin"
    depth: int = 50
    base_filters: int = 64
    weights: str = None             # initialisation: pretrained name or file (ImageNet/Kinetics)
    dropout: float = 0.5
    partial_bn: object = "auto"     # True/False, or "auto": True only when `weights` is given
    implementation: str = "auto"
    online: bool = False            # online TSM (causal shift; keras_tin.streaming)
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
    devices: int = None             # data_parallel (JAX): the first N devices (default all)
    output_dir: str = "runs/tin"
    tensorboard: bool = False
    seed: int = 0
    verbose: int = 1
    on_error: str = "skip"          # bad videos: "skip" (count, report) or "raise" (stop)
    report: str = None              # JSON file listing skipped videos and decode notes

    def __post_init__(self):
        if self.arch is not None:
            self._apply_arch()
        self.lr_steps = tuple(int(s) for s in (self.lr_steps or ()))
        if self.multilabel is None:
            self.multilabel = self.dataset in MULTILABEL_DATASETS
        self.sampling_derived = self.sampling is None  # not a field: re-derived on --arch
        if self.sampling is None:
            from keras_tin import architectures
            self.sampling = architectures.default_sampling(self.architecture())
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}. "
                                 f"Received: {name}={getattr(self, name)!r}")
        self.partial_bn = parse_partial_bn(self.partial_bn)
        if self.frames < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("frames, batch_size and epochs must be positive. Received: "
                             f"frames={self.frames}, batch_size={self.batch_size}, "
                             f"epochs={self.epochs}")
        for name in ("steps_per_epoch", "validation_steps", "lr_batch_size", "devices"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer or unset. "
                                 f"Received: {name}={value!r}")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number >= 0. Received: lr={self.lr!r}")
        if self.online and self.architecture() != "tsm_mobilenetv2":
            raise ValueError("online=True (the causal shift of online TSM) needs "
                             "arch='tsm_mobilenetv2'. Received: "
                             f"arch={self.architecture()!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive. Received: image_size={self.image_size}")

    def _apply_arch(self):
        from keras_tin import architectures

        parsed = architectures.parse(self.arch)
        if parsed.image_backbone:
            raise ValueError(f"arch={self.arch!r} is an image backbone; train a video model "
                             f"on it, e.g. arch='tsm_{self.arch}' with weights naming it.")
        if parsed.standalone:  # a network of its own (r2plus1d_18, ...): no temporal/depth
            return
        self.temporal = parsed.temporal
        self.depth = parsed.depth if parsed.depth is not None else self.depth

    def architecture(self):
        """The architecture name of the model to build: `arch`, or temporal_resnetDEPTH."""
        return self.arch or f"{self.temporal}_resnet{self.depth}"

    def use_partial_bn(self):
        """Whether to freeze every BatchNorm but the first: ``partial_bn``, where "auto" means
        only when starting from pretrained weights (TSN's fine-tuning recipe; from scratch,
        frozen BatchNorm at its initial statistics makes the loss explode)."""
        if self.partial_bn == "auto":
            return self.weights is not None
        return bool(self.partial_bn)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["lr_steps"] = list(self.lr_steps)
        return d

    def save(self, path):
        from keras_tin.training import run_folder

        run_folder.write_text(path, json.dumps(self.to_dict(), indent=2))

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


def parse_partial_bn(value):
    """True, False or "auto" from a bool or a string (flags, JSON, YAML)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() == "auto":
            return "auto"
        try:
            return _bool(value)
        except argparse.ArgumentTypeError:
            pass
    raise ValueError(f"partial_bn must be true, false or auto. Received: partial_bn={value!r}")


def _bool_or_auto(text):
    try:
        return parse_partial_bn(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected true, false or auto. Received: {text!r}") from None


HELP = {
    "partial_bn": "freeze every BatchNorm but the first (TSN's partial BN): true, false, or "
                  "auto (default): only when starting from --weights (from scratch, frozen "
                  "BatchNorm statistics make the loss explode)",
    "on_error": "a video that cannot be read: skip it (counted, listed by --report) or raise "
                "(stop at the first, naming the file)",
    "report": "write a JSON report of skipped videos and decode notes (looped short clips, "
              "wrong frame counts) here, kept up to date while training",
    "weights": "initial weights: a pretrained name (keras_tin.weights.list_pretrained()) or "
               "a .keras/.weights.h5/PyTorch file; the classifier is replaced when the class "
               "count differs",
    "output_dir": "run folder; rerunning the same command resumes an interrupted run there",
    "strategy": "default, mirrored (GPUs of this host), multi_worker (one process per host, "
                "cluster from TF_CONFIG), tpu, data_parallel (JAX: KERAS_BACKEND=jax)",
    "data_service": "grpc://HOST:PORT of a tf.data service dispatcher (keras-tin "
                    "data-service): training videos are decoded on its workers",
    "deterministic": "decode and batch videos in a fixed order (with --seed: reproducible "
                     "runs; slower)",
    "devices": "with --strategy data_parallel: use the first N JAX devices",
    "online": "online TSM: the causal (uni-directional) shift, so the trained model runs "
              "frame by frame (keras_tin.streaming, keras-tin stream); needs --arch "
              "tsm_mobilenetv2",
    "arch": "architecture name, overriding --temporal/--depth: tin_resnet50, tsm_resnet101, "
            "tada2d_resnet50, tea_res2net50, stm_resnet50, tsm_eca_resnet50, "
            "tsm_mobilenetv2, ...",
}


def _type_of(field):
    kind = {"flip": bool, "multilabel": bool, "weights": str, "arch": str, "lr_batch_size": int,
            "steps_per_epoch": int, "validation_steps": int, "report": str,
            "devices": int, "data_service": str, "sampling": str}.get(field.name)
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
        if name in HELP:
            help_text = f"{HELP[name]} ({help_text})"
        if name == "partial_bn":
            parser.add_argument(flag, type=_bool_or_auto, default=None,
                                metavar="{true,false,auto}", help=help_text)
        elif name == "online":  # `--online` alone means true
            parser.add_argument(flag, type=_bool, nargs="?", const=True, default=None,
                                metavar="{true,false}", help=help_text)
        elif kind is bool:
            parser.add_argument(flag, type=_bool, default=None, metavar="{true,false}",
                                help=help_text)
        elif kind is tuple:
            parser.add_argument(flag, type=int, nargs="*", default=None, help=help_text)
        elif name in CHOICES:
            parser.add_argument(flag, type=kind, choices=CHOICES[name], default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def config_from_args(args, defaults=None):
    """`defaults` < ``--config`` file < explicit flags."""
    defaults = defaults or TrainConfig()
    values = defaults.to_dict()
    values["multilabel"] = None  # re-derived from the dataset unless set explicitly
    if defaults.sampling_derived:  # re-derived from the architecture unless set
        values["sampling"] = None
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    for name in FIELDS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return TrainConfig(**values)


def output_path(config, *parts):
    return os.path.join(config.output_dir, *parts)
