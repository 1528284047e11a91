"""Converting the published TAda2D checkpoints (alibaba-mmai-research/TAdaConv) into
keras_tin's TAda2D ResNets (TAda2DResNet50, TemporalResNet(temporal="tada2d")).

convert.assign_state_dict hands a state dict here when the model is a TAda2D network or
the checkpoint is in the TAdaConv repository's layout (see `applies`), so a TAda2D
checkpoint is never half-loaded into another model, nor another checkpoint into a TAda2D
model: both are refused with both named. Otherwise the guarantees are the ResNet path's:
every checkpoint tensor lands on a Keras variable of the same shape and every variable is
covered, or nothing is assigned and a ValueError lists the offending names. A classifier
with another class count (or a model without one) keeps the model's head, with a message.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts_tada


def is_tada_model(model):
    """True for a keras_tin model holding TAda blocks."""
    from keras_tin.layers.tada import TAdaCalibration

    return any(isinstance(layer, TAdaCalibration) for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter (rather than another family's) handles the pair."""
    return is_tada_model(model) or layouts_tada.looks_like_tadaconv(state_dict)


def _model_kind(model):
    try:
        return convert.model_temporal(model).upper()
    except ValueError:
        return "not TAda2D"


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a TAdaConv-layout PyTorch state dict (name -> NumPy array) into a keras_tin
    TAda2D ResNet; see the module docstring. Returns a dict: layout, temporal ("tada2d"),
    head_loaded."""
    keys = list(state_dict)
    model_is_tada = is_tada_model(model)
    ckpt_is_tadaconv = layouts_tada.looks_like_tadaconv(keys)
    if ckpt_is_tadaconv and not model_is_tada:
        what = ("a TAda2D checkpoint" if layouts_tada.is_tada2d(keys)
                else "a TAdaConv-repository checkpoint without TAda route functions")
        raise ValueError(
            f"The checkpoint is {what} ({layouts_tada.LAYOUT} layout: backbone.conv1.a.*, "
            f"backbone.convS.res_i.conv_branch.*) but model '{model.name}' is a "
            f"{_model_kind(model)} network, not TAda2D; build TAda2DResNet50 (architecture "
            f"'tada2d_resnet50'). Nothing was loaded.")
    if model_is_tada and not ckpt_is_tadaconv:
        raise ValueError(
            f"Model '{model.name}' is a TAda2D network but the checkpoint is not a TAda2D "
            f"checkpoint in the {layouts_tada.LAYOUT} layout (keys backbone.conv1.a.*, "
            f"backbone.convS.res_i.conv_branch.b_rf.*); nothing was loaded. First keys: "
            f"{keys[:6]}")
    canonical, layout = layouts_tada.canonicalize(state_dict, layout)
    variables = convert.keras_variables(model)
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_tada.keras_target, head_loaded, "tada2d")
    if problems:
        raise ValueError(f"Cannot load the {layout}-layout TAda2D checkpoint into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": "tada2d", "head_loaded": head_loaded}
