"""Converting STM-ResNet checkpoints (the first author's STM.py / CMM.py layout, see
layouts_stm.py) into keras_tin's STM models (STMResNet50, TemporalResNet(temporal="stm")).

convert.assign_state_dict hands a state dict here when the model is an STM network or the
checkpoint holds STM modules (see `applies`), so an STM checkpoint offered to another model,
or another video checkpoint offered to an STM model, is refused with both named. The
guarantees are those of the ResNet path: every checkpoint tensor lands on a Keras variable
of the same shape and every variable is covered, or nothing is assigned and a ValueError
lists the offending names. Pairings:

- an STM checkpoint -> an STM model of the same depth: everything;
- a torchvision ImageNet ResNet (conv1.weight, layerL.b.*, fc.*) -> an STM model: the
  backbone (conv1, bn1, conv1-3 / bn1-3, downsample of every block); the STM modules (CSTM
  shift, CMM mb_*) keep their initialisation, with a message (the author's
  load_parameters("imagenet") does the same);
- a classifier with another class count (or a model without one) keeps the model's head,
  with a message.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts
from keras_tin.weights import layouts_stm


def is_stm_model(model):
    """True for a keras_tin model holding STM blocks (by its layer names)."""
    return any(layer.name.endswith("_mb_stage_conv") for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter handles the pair: the model or the checkpoint is STM."""
    return is_stm_model(model) or layouts_stm.looks_like_stm(state_dict)


def _model_kind(model):
    try:
        return convert.model_temporal(model).upper()
    except ValueError:
        return "not STM"


def _other_checkpoint(state_dict):
    """What a checkpoint without STM modules is, for the refusal, or None for a torchvision
    ImageNet ResNet (which initialises an STM backbone)."""
    try:
        _, layout, temporal = layouts.canonicalize(state_dict)
    except ValueError:
        return f"not an STM or ResNet checkpoint (first keys: {list(state_dict)[:6]})"
    if layout == "torchvision":
        return None
    return f"a {temporal.upper()}-ResNet checkpoint ({layout} layout) without STM modules"


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies an STM (or torchvision ResNet) PyTorch state dict (name -> NumPy array) into a
    keras_tin STM-ResNet; see the module docstring. Returns a dict: layout, form ("stm" or
    "imagenet"), temporal ("stm", None for the ImageNet backbone), head_loaded."""
    keys = list(state_dict)
    model_is_stm = is_stm_model(model)
    ckpt_is_stm = layouts_stm.looks_like_stm(keys)
    if ckpt_is_stm and not model_is_stm:
        raise ValueError(
            f"The checkpoint is an STM-ResNet ({layouts_stm.LAYOUT} layout: layerL.b.shift, "
            f"layerL.b.mb.*) but model '{model.name}' is a {_model_kind(model)} network, not "
            f"STM; build STMResNet50 (architecture 'stm_resnet50'). Nothing was loaded.")
    if not ckpt_is_stm:
        other = _other_checkpoint(state_dict)
        if other is not None:
            raise ValueError(
                f"Model '{model.name}' is an STM-ResNet but the checkpoint is {other}; an STM "
                f"model takes an STM checkpoint (keys layerL.b.shift.weight, "
                f"layerL.b.mb.stage_conv.weight, ...) or a torchvision ImageNet ResNet. "
                f"Nothing was loaded.")
    return convert.assign_family_or_backbone(model, state_dict, layout, verbose, layouts_stm,
                                             layouts_stm.STM_LAYER, "stm", "STM-ResNet",
                                             "STM-module")
