"""Converting the published video-ResNet checkpoints (torchvision r3d_18 / mc3_18 /
r2plus1d_18, VMZ / IG-65M R(2+1)D-34, mmaction2 R(2+1)D-34) into keras_tin's video ResNets
(keras_tin.applications.video3d.resnet3d).

convert.assign_state_dict hands a state dict here when the model is a keras_tin video
ResNet or the checkpoint is in one of these layouts (see `applies`): a video-ResNet
checkpoint is never half-loaded into another model, nor another family's checkpoint into a
video ResNet; both are refused with both named. Otherwise: every checkpoint tensor lands on
a Keras variable of the same shape and every variable is covered, or nothing is assigned
and a ValueError lists the offending names (e.g. a torchvision R(2+1)D-18 file in an R3D-18,
or a VMZ file in the mmaction2 variant). A classifier with another class count (or a model
without one) keeps the model's head, with a message.
"""

import re

from keras_tin.weights import convert
from keras_tin.weights import layout_rules
from keras_tin.weights import layouts_video3d_mmaction2
from keras_tin.weights import layouts_video3d_torchvision
from keras_tin.weights import layouts_video3d_vmz

LAYOUTS = {module.LAYOUT: module for module in (
    layouts_video3d_torchvision, layouts_video3d_vmz, layouts_video3d_mmaction2)}
_MODEL_MARKERS = ("layer1_0_conv1", "layer1_0_conv1_s")
_BN_LAYER = re.compile(r"^(?:stem_bn(?:_s)?|.*_(?:bn[12](?:_s)?|downsample_bn(?:_s)?))$")


def is_video_resnet(model):
    """True for a keras_tin video ResNet (resnet3d.VideoResNet: a Conv3D layer1_0_conv1)."""
    import keras

    return any(layer.name in _MODEL_MARKERS and isinstance(layer, keras.layers.Conv3D)
               for layer in model.layers)


def detect_layout(keys):
    """"mmaction2_r2plus1d", "torchvision_video" (torchvision and VMZ keys) or None."""
    keys = list(keys)
    if layouts_video3d_mmaction2.looks_like(keys):
        return layouts_video3d_mmaction2.LAYOUT
    if layouts_video3d_torchvision.looks_like(keys):
        return layouts_video3d_torchvision.LAYOUT
    return None


def applies(model, state_dict):
    """Whether this converter (rather than another family's) handles the pair."""
    return is_video_resnet(model) or detect_layout(state_dict) is not None


def keras_target(canonical):
    """(keras layer name, variable name, transpose axes or None) for a canonical key."""
    layer, param = canonical.split(":")
    target = layout_rules.head_or_bn_target(layer, param, _BN_LAYER.match)
    if target:
        return target
    return layer, "kernel", (2, 3, 4, 1, 0)  # Conv3d (O, I, t, h, w) -> (t, h, w, I, O)


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a video-ResNet PyTorch state dict (name -> NumPy array) into a keras_tin video
    ResNet; see the module docstring. layout: None (detected), "torchvision_video", "vmz"
    or "mmaction2_r2plus1d". Returns a dict: layout, temporal ("video3d"), head_loaded."""
    keys = list(state_dict)
    detected = detect_layout(keys)
    if detected is not None and not is_video_resnet(model):
        raise ValueError(
            f"The checkpoint is a 3D / (2+1)D video ResNet ({detected} layout: "
            f"{LAYOUTS[detected].DESCRIBE.split('(', 1)[1].rstrip(')')}) but model "
            f"'{model.name}' is not a keras_tin video ResNet; build R2Plus1D18, R3D18, MC3_18 "
            f"or R2Plus1D34 (architectures 'r2plus1d_18', 'r3d_18', 'mc3_18', 'r2plus1d_34', "
            f"'r2plus1d_34_vmz'). Nothing was loaded.")
    if detected is None:
        raise ValueError(
            f"Model '{model.name}' is a keras_tin video ResNet but the checkpoint is not in a "
            f"video-ResNet layout ({', '.join(LAYOUTS)}: keys stem.0.weight / "
            f"layer1.0.conv1.0.* or backbone.conv1.conv.conv_s.*); nothing was loaded. "
            f"First keys: {keys[:6]}")
    if layout is None:
        layout = detected
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be None or one of {sorted(LAYOUTS)} for a video ResNet. "
                         f"Received: layout={layout!r}")
    canonical, layout = LAYOUTS[layout].canonicalize(state_dict, layout)
    variables = convert.keras_variables(model)
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    assignments, problems, kept = convert.match_variables(
        canonical, variables, keras_target, head_loaded, "video3d")
    if problems:
        raise ValueError(f"Cannot load the {layout}-layout checkpoint into video ResNet "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": "video3d", "head_loaded": head_loaded}
