"""Converting pytorchvideo's R(2+1)D checkpoints (R2PLUS1D_16x4_R50.pyth, the
facebookresearch/pytorchvideo model zoo; layout in layouts_pytorchvideo.py) into keras_tin's
R(2+1)D-50 (R2Plus1DResNet50, architecture "r2plus1d_r50").

convert.assign_state_dict hands a state dict here when the model is a keras_tin
pytorchvideo-style R(2+1)D (its layers res2_0_conv_t, ...) or the checkpoint is in
pytorchvideo's R(2+1)D layout, so one is never half-loaded into the other kind: both are
refused with both named. Otherwise the ResNet path's guarantees: every checkpoint tensor
lands on a Keras variable of the same shape and every variable is covered, or nothing is
assigned and a ValueError lists the offending names. A classifier with another class count
(or a model without one) keeps the model's head, with a message.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts_pytorchvideo


def is_r2plus1d_bottleneck_model(model):
    """True for a keras_tin pytorchvideo-style R(2+1)D (by its layer names)."""
    return any(layer.name == "res2_0_conv_t" for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter handles the pair."""
    return (is_r2plus1d_bottleneck_model(model)
            or layouts_pytorchvideo.looks_like_pytorchvideo_r2plus1d(list(state_dict)))


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a pytorchvideo R(2+1)D state dict (name -> NumPy array) into a keras_tin
    R(2+1)D-50; see the module docstring. Returns a dict: layout, temporal ("r2plus1d"),
    head_loaded."""
    keys = list(state_dict)
    model_ok = is_r2plus1d_bottleneck_model(model)
    ckpt_ok = layouts_pytorchvideo.looks_like_pytorchvideo_r2plus1d(keys)
    if ckpt_ok and not model_ok:
        raise ValueError(
            f"The checkpoint is pytorchvideo's R(2+1)D ({layouts_pytorchvideo.LAYOUT} layout: "
            f"blocks.0.conv, blocks.S.res_blocks.I.branch2.conv_b.conv_t) but model "
            f"'{model.name}' is not a keras_tin R(2+1)D-50; build R2Plus1DResNet50 "
            f"(architecture 'r2plus1d_r50'). Nothing was loaded.")
    if model_ok and not ckpt_ok:
        raise ValueError(
            f"Model '{model.name}' is pytorchvideo's R(2+1)D but the checkpoint is not in "
            f"pytorchvideo's R(2+1)D layout (keys blocks.0.conv.weight, blocks.1.res_blocks.0."
            f"branch2.conv_b.conv_t.weight, ...); nothing was loaded. First keys: {keys[:6]}")
    canonical, layout = layouts_pytorchvideo.canonicalize(state_dict, layout)
    variables = convert.keras_variables(model)
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_pytorchvideo.keras_target, head_loaded, "r2plus1d")
    if problems:
        raise ValueError(f"Cannot load the {layout}-layout R(2+1)D checkpoint into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": "r2plus1d", "head_loaded": head_loaded}
