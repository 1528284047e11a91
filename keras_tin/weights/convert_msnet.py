"""Converting MSNet checkpoints (the authors' MotionSqueeze code layout, see layouts_msnet.py)
into keras_tin's MSNet models (MSNetResNet18/50, TemporalResNet(temporal="msnet")).

convert.assign_state_dict hands a state dict here when the model is an MSNet or the
checkpoint holds a MotionSqueeze module (see `applies`), so an MSNet checkpoint offered to
another model, or another video checkpoint offered to an MSNet, is refused with both named.
The guarantees are those of the ResNet path: every checkpoint tensor lands on a Keras
variable of the same shape and every variable is covered, or nothing is assigned and a
ValueError lists the offending names. Pairings:

- an MSNet checkpoint -> an MSNet of the same depth: everything;
- a torchvision ImageNet ResNet (conv1.weight, layerL.b.*, fc.*; the manifest records
  resnet50_imagenet_torchvision, ...) -> an MSNet: the backbone; the MS module (channel
  reduction, flow refinement) keeps its initialisation, with a message (MSNet trains from
  ImageNet weights this way: resnet_TSM.py resnet50(pretrained=True));
- a classifier with another class count (or a model without one) keeps the model's head,
  with a message.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts
from keras_tin.weights import layouts_msnet


def is_msnet_model(model):
    """True for a keras_tin model holding a MotionSqueeze module."""
    from keras_tin.layers.motion_squeeze import MotionSqueezeFlow

    return any(isinstance(layer, MotionSqueezeFlow) for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter handles the pair: the model or the checkpoint is MSNet."""
    return is_msnet_model(model) or layouts_msnet.looks_like_msnet(state_dict)


def _model_kind(model):
    try:
        return convert.model_temporal(model).upper()
    except ValueError:
        return "not MSNet"


def _other_checkpoint(state_dict):
    """What a checkpoint without an MS module is, for the refusal, or None for a torchvision
    ImageNet ResNet (which initialises an MSNet backbone)."""
    try:
        _, layout, temporal = layouts.canonicalize(state_dict)
    except ValueError:
        return f"not an MSNet or ResNet checkpoint (first keys: {list(state_dict)[:6]})"
    if layout == "torchvision":
        return None
    return (f"a {temporal.upper()}-ResNet checkpoint ({layout} layout) without a MotionSqueeze "
            f"module")


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies an MSNet (or torchvision ResNet) PyTorch state dict (name -> NumPy array) into
    a keras_tin MSNet; see the module docstring. Returns a dict: layout, form ("msnet" or
    "imagenet"), temporal ("msnet", None for the ImageNet backbone), head_loaded."""
    keys = list(state_dict)
    model_is_ms = is_msnet_model(model)
    ckpt_is_ms = layouts_msnet.looks_like_msnet(keys)
    if ckpt_is_ms and not model_is_ms:
        raise ValueError(
            f"The checkpoint is an MSNet ({layouts_msnet.LAYOUT} layout: chnl_reduction.*, "
            f"flow_refinement.*) but model '{model.name}' is a {_model_kind(model)} network, "
            f"not MSNet; build MSNetResNet50 / MSNetResNet18 (architecture 'msnet_resnet50'). "
            f"Nothing was loaded.")
    if not ckpt_is_ms:
        other = _other_checkpoint(state_dict)
        if other is not None:
            raise ValueError(
                f"Model '{model.name}' is an MSNet but the checkpoint is {other}; an MSNet "
                f"takes an MSNet checkpoint (keys chnl_reduction.0.weight, flow_refinement."
                f"conv1.0.weight, ...) or a torchvision ImageNet ResNet. Nothing was loaded.")
    return convert.assign_family_or_backbone(model, state_dict, layout, verbose, layouts_msnet,
                                             layouts_msnet.MS_LAYER, "msnet", "MSNet",
                                             "MotionSqueeze-module")
