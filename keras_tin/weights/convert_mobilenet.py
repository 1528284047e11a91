"""Converting the published TSM-MobileNetV2 checkpoints into keras_tin's TemporalMobileNetV2.

convert.assign_state_dict hands a state dict here when the model or the checkpoint is a
MobileNetV2 (see `applies`); the guarantees are those of the ResNet path: every checkpoint
tensor lands on a Keras variable of the same shape and every variable is covered, or
nothing is assigned and a ValueError lists the offending names. A classifier with another
class count (or a model without one) keeps the model's head, with a message; a torchvision
backbone leaves the temporal modules at their initialisation, with a message.
"""

import re

from keras_tin.weights import convert
from keras_tin.weights import layouts_mobilenet

ARCH_PATTERN = re.compile(r"^(tin|tsm|tsn)_mobilenetv2$")


def parse_architecture(arch):
    """'tsm_mobilenetv2' -> 'tsm'; None for any other name (e.g. a ResNet)."""
    match = ARCH_PATTERN.match(str(arch))
    return match.group(1) if match else None


def build_model(arch, **kwargs):
    """The TemporalMobileNetV2 a manifest architecture name such as 'tsm_mobilenetv2' needs;
    kwargs (frames, classes, normalization, input_shape, ...) go to TemporalMobileNetV2.
    A thin wrapper of keras_tin.applications.records.build_for_architecture, imported
    when called (this package does not import the model builders)."""
    if parse_architecture(arch) is None:
        raise ValueError("arch must be tin_mobilenetv2, tsm_mobilenetv2 or tsn_mobilenetv2. "
                         f"Received: arch={arch!r}")
    from keras_tin.applications.records import build_for_architecture

    return build_for_architecture(arch, **kwargs)


def is_mobilenet_model(model):
    """True for a keras_tin TemporalMobileNetV2 (by its layer names)."""
    names = {layer.name for layer in model.layers}
    return "conv_last" in names and "block0_depthwise" in names


def applies(model, state_dict):
    """Whether the MobileNetV2 converter (rather than the ResNet one) handles this pair."""
    return is_mobilenet_model(model) or layouts_mobilenet.looks_like_mobilenet(state_dict)


def _is_online(model):
    from keras_tin.layers.online_shift import OnlineTemporalShift
    return any(isinstance(layer, OnlineTemporalShift)
               for layer in model._flatten_layers(include_self=False))


def _shifted_in_model(model):
    from keras_tin import layers as tin_layers
    from keras_tin.layers.online_shift import OnlineTemporalShift
    out = set()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (tin_layers.TemporalShift, OnlineTemporalShift)):
            out.add(int(layer.name[len("block"):-len("_tsm")]))
    return out


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a MobileNetV2 PyTorch state dict (name -> NumPy array) into a keras_tin
    TemporalMobileNetV2; see the module docstring. Returns a dict: layout, temporal (of the
    checkpoint), head_loaded."""
    from keras_tin.weights.convert import model_temporal

    if not is_mobilenet_model(model):
        raise ValueError(
            f"The checkpoint is a MobileNetV2 but model '{model.name}' is not a keras_tin "
            f"TemporalMobileNetV2; build TSMMobileNetV2 (or TSN/TINMobileNetV2). Nothing was "
            f"loaded.")
    if not layouts_mobilenet.looks_like_mobilenet(state_dict):
        raise ValueError(
            f"Model '{model.name}' is a TemporalMobileNetV2 but the checkpoint is not a "
            f"MobileNetV2 one (a ResNet?); nothing was loaded. First keys: "
            f"{list(state_dict)[:6]}")
    online = _is_online(model)
    if layout is None and online and layouts_mobilenet.is_flat_features(state_dict):
        layout = "online"  # MIT's online demo checkpoint (see layouts_mobilenet)
    canonical, layout, temporal, shifted = layouts_mobilenet.canonicalize(state_dict, layout)
    kind = "tsm_online" if online else model_temporal(model)
    if temporal is not None and (temporal == "tsm_online") != online:
        which = "an online" if temporal == "tsm_online" else "an offline"
        raise ValueError(
            f"The checkpoint ({layout} layout) is {which} MobileNetV2 but model "
            f"'{model.name}' is {'online' if online else 'offline'}; "
            "the online demo's checkpoint needs TSMMobileNetV2(online=True) and offline "
            "checkpoints need online=False. Nothing was loaded.")
    if temporal is not None and temporal != kind:
        raise ValueError(f"The checkpoint is a {temporal.upper()} MobileNetV2 ({layout} layout) "
                         f"but model '{model.name}' is {kind.upper()}; build the matching "
                         f"model. Nothing was loaded.")
    if temporal in ("tsm", "tsm_online"):
        in_model = _shifted_in_model(model)
        if set(shifted) != in_model:
            raise ValueError(
                f"The TSM checkpoint shifts other blocks than model '{model.name}': shifted "
                f"only in the checkpoint: {sorted(set(shifted) - in_model)}; only in the "
                f"model: {sorted(in_model - set(shifted))} (keras_tin block numbers). "
                f"Nothing was loaded.")

    variables = convert.keras_variables(model)
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)

    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_mobilenet.keras_target, head_loaded, temporal)
    if problems:
        raise ValueError(f"Cannot load the {layout}-layout MobileNetV2 checkpoint into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": temporal, "head_loaded": head_loaded}
