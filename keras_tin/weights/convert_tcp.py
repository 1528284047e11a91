"""Converting TCPNet checkpoints (ZilinGao/Temporal-attentive-Covariance-Pooling-Networks-
for-Video-Recognition; key layout in layouts_tcp.py, both of the repository's spellings)
into keras_tin's TCP networks (TCPResNet50, TCPResNet152, TemporalResNet(pooling="tcp")).

convert.assign_state_dict hands a state dict here when the model has a TCP head or the
checkpoint holds one (see `applies`), so a TCP checkpoint offered to a model without the
head, or a TCP model offered a checkpoint of another video family, is refused with both
named. The guarantees are those of the ResNet path: every checkpoint tensor lands on a
Keras variable of the same shape and every variable is covered, or nothing is assigned
and a ValueError lists the offending names. Pairings:

- a TCPNet checkpoint -> a TCP model of the same backbone: everything;
- a plain ImageNet ResNet (torchvision names conv1.weight, layerL.b.*, fc.*; or the
  pre-activation ResNet-152 names with bn_data / bn2) -> a TCP model: the backbone; the
  TCP head keeps its initialisation, with a message;
- a classifier with another class count (or a model without one) keeps the model's head,
  with a message.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts_tcp


def is_tcp_model(model):
    """True for a keras_tin model with a TCP head."""
    from keras_tin.layers.tcp import LAYER_TYPES

    return any(isinstance(layer, LAYER_TYPES) for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter handles the pair: the model or the checkpoint has TCP."""
    return is_tcp_model(model) or layouts_tcp.looks_like_tcp(state_dict)


def _model_kind(model):
    try:
        return convert.model_temporal(model).upper()
    except ValueError:
        return "non-TCP"


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a TCPNet (or ImageNet ResNet) PyTorch state dict (name -> NumPy array) into
    a keras_tin TCP network; see the module docstring. Returns a dict: layout, spelling
    ("current" / "old"; None for a backbone), form ("tcp" / "backbone"), temporal ("tcp",
    None for a backbone), head_loaded."""
    keys = list(state_dict)
    model_is_tcp = is_tcp_model(model)
    ckpt_is_tcp = layouts_tcp.looks_like_tcp(keys)
    if ckpt_is_tcp and not model_is_tcp:
        raise ValueError(
            f"The checkpoint is a TCPNet ({layouts_tcp.LAYOUT} layout: module.base_model.TCP.* "
            f"or the older layer4.iSQRT.*) but model '{model.name}' is a {_model_kind(model)} "
            f"network without the TCP head; build TCPResNet50 / TCPResNet152 (architecture "
            f"'tcp_resnet50' / 'tcp_resnet152') or pass pooling='tcp'. Nothing was loaded.")
    try:
        canonical, layout, spelling = layouts_tcp.canonicalize(state_dict, layout)
    except ValueError as error:
        if ckpt_is_tcp:
            raise
        raise ValueError(
            f"Model '{model.name}' has a TCP head but the checkpoint is neither a TCPNet "
            f"checkpoint (module.base_model.TCP.*) nor a plain ResNet backbone it could "
            f"initialise; nothing was loaded. {error}") from None
    variables = convert.keras_variables(model)
    kept_head = []
    if not ckpt_is_tcp:  # a backbone: the TCP head keeps its initialisation
        kept_head = sorted(f"{layer}/{var}" for layer, var in variables
                           if layer.startswith("tcp_"))
        variables = {key: value for key, value in variables.items()
                     if not key[0].startswith("tcp_")}
        spelling = None
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    temporal = "tcp" if ckpt_is_tcp else None
    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_tcp.keras_target, head_loaded, temporal)
    if problems:
        ckpt_preact = "bn_data:weight" in canonical
        model_preact = ("bn_data", "gamma") in variables
        if ckpt_preact != model_preact:
            problems.append(
                "the checkpoint's backbone is the pre-activation ResNet (bn_data, bn2) of the "
                "TCPNet ResNet-152 release: build it with block='preact' (TCPResNet152's "
                "default)" if ckpt_preact else
                "the model is a pre-activation ResNet (block='preact') but the checkpoint's "
                "backbone is not: build it with block='bottleneck'")
        conv_1d, kernel = canonical.get("tcp_conv_1d:weight"), variables.get(("tcp_conv_1d",
                                                                               "kernel"))
        if conv_1d is not None and kernel is not None and conv_1d.shape[-1] != kernel.shape[0]:
            k = conv_1d.shape[-1]
            problems.append(f"the checkpoint's temporal conv has kernel {k} = frames//2 + 1, "
                            f"so it was trained with {2 * (k - 1)} (or {2 * (k - 1) + 1}) "
                            f"frames; the model's kernel {kernel.shape[0]} is for other "
                            f"frames: build it with frames={2 * (k - 1)}")
        what = "TCPNet" if ckpt_is_tcp else "ResNet backbone"
        raise ValueError(f"Cannot load the {what} checkpoint ({layout} layout) into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    kept["TCP-head"] = kept_head
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "spelling": spelling, "form": "tcp" if ckpt_is_tcp else "backbone",
            "temporal": temporal, "head_loaded": head_loaded}
