"""Converting Res2Net-50 (26w x 4s) checkpoints into keras_tin's Res2Net-block models:
TEA-Res2Net-50 (TEARes2Net50) and the TSN-Res2Net-50 (TSNRes2Net50; "res2net50" is its
one-frame image backbone).

convert.assign_state_dict hands a state dict here when the model or the checkpoint is of
the Res2Net family (see `applies`), so a Res2Net checkpoint offered to a ResNet or a
MobileNetV2 model, or a ResNet checkpoint offered to a Res2Net model, is refused with both
named. The guarantees are those of the ResNet path: every checkpoint tensor lands on a
Keras variable of the same shape and every variable is covered, or nothing is assigned and
a ValueError lists the offending names. Pairings:

- a TEA checkpoint (TEA code's TSN wrapper) -> a TEA model: everything;
- a TSN-wrapper Res2Net checkpoint without TEA modules -> a TSN-Res2Net model;
- the Res2Net ImageNet checkpoint (a backbone) -> a TSN-Res2Net model (everything), or into
  TEA (or any temporal kind on Res2Net blocks): the backbone, and the temporal modules
  (TEA's ME and temporal convs) keep their initialisation, with a message;
- a classifier with another class count (or a model without one) keeps the model's head,
  with a message.
"""

import re

from keras_tin.weights import convert
from keras_tin.weights import layouts_res2net

_TEA_LAYER = re.compile(r"_(?:me_(?:conv[123]|bn[13])|shifts_\d)$")


def is_res2net_model(model):
    """True for a keras_tin model built from Res2Net blocks (by its layer names)."""
    return any(layer.name == "layer1_0_convs_0" for layer in model.layers)


def model_temporal(model):
    """'tea' for a model with TEA modules, else the ResNet family's answer ('tin', 'tsm',
    'tsn')."""
    if any(_TEA_LAYER.search(layer.name) for layer in model.layers):
        return "tea"
    return convert.model_temporal(model)


def applies(model, state_dict):
    """Whether this converter handles the pair: the model or the checkpoint is a Res2Net."""
    return is_res2net_model(model) or layouts_res2net.looks_like_res2net(state_dict)


def _describe(temporal, form):
    if temporal is None:
        return "the Res2Net-50 ImageNet backbone"
    return f"a {temporal.upper()}-Res2Net-50 ({form})"


def head_classes(state_dict, layout=None):
    """Class count of a Res2Net state dict's classifier, or None when it has none."""
    canonical = layouts_res2net.canonicalize(state_dict, layout)[0]
    fc = canonical.get("fc:weight")
    return None if fc is None else int(fc.shape[0])


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a Res2Net PyTorch state dict (name -> NumPy array) into a keras_tin Res2Net
    model; see the module docstring. Returns a dict: layout, form ("tsn-wrapper" or
    "imagenet"), temporal (of the checkpoint; None for the ImageNet backbone),
    head_loaded."""
    if not is_res2net_model(model):
        raise ValueError(
            f"The checkpoint is a Res2Net-50 (keys like layerL.b.convs.i / bns.i) but model "
            f"'{model.name}' is not built from Res2Net blocks (a ResNet or MobileNetV2?); "
            f"build TEARes2Net50 or TSNRes2Net50 (TemporalResNet(..., block='res2net')). "
            f"Nothing was loaded.")
    if not layouts_res2net.looks_like_res2net(state_dict):
        raise ValueError(
            f"Model '{model.name}' is a Res2Net-50 ({model_temporal(model).upper()}) but the "
            f"checkpoint is not a Res2Net one (no layerL.b.convs.i / bns.i keys: a ResNet or "
            f"MobileNetV2 checkpoint?); nothing was loaded. First keys: {list(state_dict)[:6]}")
    canonical, layout, temporal, form = layouts_res2net.canonicalize(state_dict, layout)
    kind = model_temporal(model)
    if temporal is not None and temporal != kind:
        raise ValueError(
            f"The checkpoint is {_describe(temporal, form)} but model '{model.name}' is "
            f"{kind.upper()}-Res2Net-50; build the matching model "
            f"({'TEARes2Net50' if temporal == 'tea' else 'TSNRes2Net50'}). Nothing was "
            f"loaded.")

    variables = convert.keras_variables(model)
    kept_tea = []
    if temporal is None:  # a backbone: the temporal modules keep their initialisation
        kept_tea = sorted(f"{layer}/{var}" for layer, var in variables
                          if _TEA_LAYER.search(layer))
        variables = {key: value for key, value in variables.items()
                     if not _TEA_LAYER.search(key[0])}
    fc = canonical.get("fc:weight")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_res2net.keras_target, head_loaded, temporal)
    if problems:
        raise ValueError(f"Cannot load {_describe(temporal, form)} checkpoint ({layout} "
                         f"layout) into model '{model.name}'; nothing was loaded. "
                         + "; ".join(problems))
    kept["TEA-module"] = kept_tea
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "form": form, "temporal": temporal, "head_loaded": head_loaded}
