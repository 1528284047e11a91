"""Converting PyTorch TIN / TSM / TSN ResNet checkpoints into keras_tin models.

Other model families (MobileNetV2, TAda2D, TEA, STM, ...) have converters of their own,
one module each, listed in FAMILY_CONVERTERS: a module with `applies(model, state_dict)`
(the model or the checkpoint is of its family) and `assign_state_dict(model, state_dict,
layout, verbose)`. `assign_state_dict` below hands a model/checkpoint pair to the first
family that claims it, so a checkpoint of one family is refused by a model of another
with both named, never loaded partially.
"""

import importlib
import re

import numpy as np

from keras_tin.weights import layouts
from keras_tin.weights import layouts_eca
from keras_tin.weights import pth_reader

def model_temporal(model):
    """'tin', 'tsm' or 'tsn': which temporal module a keras_tin model holds."""
    from keras_tin import layers as tin_layers
    kinds = set()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, tin_layers.TemporalInterlace):
            kinds.add("tin")
        elif isinstance(layer, tin_layers.TemporalShift):
            kinds.add("tsm")
    if len(kinds) > 1:
        raise ValueError(f"Model '{model.name}' mixes temporal modules {sorted(kinds)}.")
    return kinds.pop() if kinds else "tsn"


_SHIFTED_BLOCK = re.compile(r"(layer[1-4])\.(\d+)\.(?:block\.)?conv1\.(?:conv\.)?net\.weight$")


def _check_shift_placement(model, state_dict):
    """A TSM checkpoint's shifted blocks must be the model's: shifts have no weights, so a
    mismatch (e.g. a ResNet-101 that shifts every other block) would load without a missing
    key and give wrong outputs."""
    from keras_tin import layers as tin_layers
    in_ckpt = set()
    for key in state_dict:
        match = _SHIFTED_BLOCK.search(key)
        if match:
            in_ckpt.add(f"{match.group(1)}.{match.group(2)}")
    in_model = {layer.name[:-len("_tsm")].replace("_", ".")
                for layer in model._flatten_layers(include_self=False)
                if isinstance(layer, tin_layers.TemporalShift)}
    if in_ckpt != in_model:
        only_ckpt = sorted(in_ckpt - in_model)
        only_model = sorted(in_model - in_ckpt)
        raise ValueError(
            f"The TSM checkpoint shifts other blocks than model '{model.name}': shifted only "
            f"in the checkpoint: {only_ckpt}; only in the model: {only_model}. Nothing was "
            f"loaded (the published TSM-ResNet-101 shifts every other block).")


TIN_VARIABLES = ("offset_", "weight_conv")

# Model families with a converter module of their own (imported when needed).
FAMILY_CONVERTERS = [
    "keras_tin.weights.convert_mobilenet",
    "keras_tin.weights.convert_res2net",
    "keras_tin.weights.convert_tada",
    "keras_tin.weights.convert_stm",
    "keras_tin.weights.convert_tcp",
    "keras_tin.weights.convert_pytorchvideo",
    "keras_tin.weights.convert_squeezetime",
    "keras_tin.weights.convert_msnet",
    "keras_tin.weights.convert_video3d",
]


def family_converter(model, state_dict):
    """The converter module of the first family claiming the model or the checkpoint,
    or None for the TIN/TSM/TSN ResNets handled here."""
    for path in FAMILY_CONVERTERS:
        module = importlib.import_module(path)
        if module.applies(model, state_dict):
            return module
    return None


def keras_variables(model):
    """{(top-level layer name, variable name): variable}."""
    out = {}
    for layer in model.layers:
        for variable in layer.weights:
            out[(layer.name, variable.path.split("/")[-1])] = variable
    return out


def load_head(model, variables, checkpoint_classes, verbose):
    """Whether a checkpoint's classifier goes into the model's `fc`; says why not when not
    (the model has none, the checkpoint has none, or the class counts differ)."""
    model_fc = variables.get(("fc", "kernel"))
    if model_fc is None:
        if checkpoint_classes is not None:
            _info("The model has no classifier: the checkpoint's head is not used.", verbose)
        return False
    if checkpoint_classes is None:
        _info(f"The checkpoint has no classifier: the classifier (fc) of model '{model.name}' "
              f"keeps its initialisation; the backbone is loaded.", verbose)
        return False
    if checkpoint_classes != model_fc.shape[-1]:
        _info(f"Checkpoint head has {checkpoint_classes} classes but the model has "
              f"{model_fc.shape[-1]}: the classifier (fc) keeps its initialisation; the "
              f"backbone is loaded.", verbose)
        return False
    return True


def match_variables(canonical, variables, keras_target, head_loaded, temporal):
    """Matches canonical checkpoint tensors to Keras variables, all or nothing.

    keras_target(key) -> (layer, variable name, transpose axes or None). Returns
    (assignments {(layer, variable): array}, problems [text], kept {what: [names]}): the
    variables a backbone-only checkpoint (temporal None) legitimately leaves at their
    initialisation (TIN modules, non-local blocks), everything else missing is a problem.
    """
    assignments, unexpected, mismatched = {}, [], []
    for key, value in canonical.items():
        target_layer, var_name, axes = keras_target(key)
        if target_layer == "fc" and not head_loaded:
            continue
        variable = variables.get((target_layer, var_name))
        if variable is None:
            unexpected.append(f"{key} -> {target_layer}/{var_name}")
            continue
        value = np.asarray(value)
        if axes and value.ndim != len(axes):  # e.g. a 2-D tensor where a conv kernel goes
            mismatched.append(f"{key} {tuple(value.shape)} -> {target_layer}/{var_name} "
                              f"{tuple(variable.shape)}")
            continue
        array = np.transpose(value, axes) if axes else value
        if tuple(array.shape) != tuple(variable.shape):
            mismatched.append(f"{key} {tuple(value.shape)} -> {target_layer}/{var_name} "
                              f"{tuple(variable.shape)}")
            continue
        assignments[(target_layer, var_name)] = array
    missing, kept = [], {"temporal-module": [], "non-local-block": [], "ECA": []}
    # ECA kernels keep their init only when the source has none (a plain ImageNet ResNet).
    source_eca = any(layer.endswith("_eca") for layer, _ in assignments)
    for layer, var_name in variables:
        if (layer, var_name) in assignments or (layer == "fc" and not head_loaded):
            continue
        if temporal is None and var_name.startswith(TIN_VARIABLES):
            kept["temporal-module"].append(f"{layer}/{var_name}")
        elif temporal is None and "_nl_" in layer:  # ImageNet backbone, as mmaction2 starts
            kept["non-local-block"].append(f"{layer}/{var_name}")
        elif temporal is None and layer.endswith("_eca") and not source_eca:
            kept["ECA"].append(f"{layer}/{var_name}")
        else:
            missing.append(f"{layer}/{var_name}")
    problems = []
    if unexpected:
        problems.append(f"checkpoint tensors with no matching model variable: {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches (checkpoint -> model): {mismatched}")
    if missing:
        problems.append(f"model variables the checkpoint does not provide: {missing}")
    return assignments, problems, kept


def assign(assignments, variables, kept, verbose):
    """Writes matched arrays into their variables; says what keeps its initialisation."""
    for target, array in assignments.items():
        variables[target].assign(array.astype(variables[target].dtype))
    for what, names in kept.items():
        if names:
            _info(f"Backbone-only checkpoint: {len(names)} {what} variables keep their "
                  f"initialisation.", verbose)


def _info(message, verbose):
    if verbose:
        print(message)


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a PyTorch state dict (name -> NumPy array) into a keras_tin temporal ResNet.

    Every checkpoint tensor must find its Keras variable with the right shape, and every
    Keras variable must be covered, or nothing is assigned and a ValueError lists the
    offending names. Two exceptions, both announced: a classifier whose class count
    differs from the model's (or a model without a classifier) keeps its own head, and a
    plain torchvision backbone leaves the temporal modules, non-local blocks and (without
    ECA keys of its own) ECA kernels at their initialisation.

    Returns a dict: layout, temporal (of the checkpoint), head_loaded.
    """
    family = family_converter(model, state_dict)
    if family is not None:
        return family.assign_state_dict(model, state_dict, layout, verbose)
    canonical, layout, temporal = layouts.canonicalize(state_dict, layout)
    kind = model_temporal(model)
    if temporal is not None and temporal != kind:
        raise ValueError(f"The checkpoint is a {temporal.upper()} network ({layout} layout) but "
                         f"model '{model.name}' is {kind.upper()}; build the matching model.")
    if temporal == "tsm":
        _check_shift_placement(model, state_dict)
    variables = keras_variables(model)
    fc = canonical.get("fc.weight")
    head_loaded = load_head(model, variables, None if fc is None else fc.shape[0], verbose)

    assignments, problems, kept = match_variables(canonical, variables, layouts.keras_target,
                                                  head_loaded, temporal)
    ckpt_nl = any(".nl." in key for key in canonical)
    model_nl = any("_nl_" in layer for layer, _ in variables)
    if problems and ckpt_nl != model_nl:
        problems.append(
            "the checkpoint has non-local blocks (mmaction2's non-local TSM); build the model "
            "with non_local='embedded_gaussian', 'dot_product' or 'gaussian' (the mode the "
            "checkpoint was trained with)" if ckpt_nl else
            "the model has non-local blocks but the checkpoint has none; build it with "
            "non_local=None")
    if problems:
        problems += layouts_eca.hints(canonical, variables)
    if problems:
        raise ValueError(f"Cannot load the {layout}-layout checkpoint into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": temporal, "head_loaded": head_loaded}


def load_torch_checkpoint(model, path, layout=None, use_torch=False, verbose=True):
    """Reads a .pth/.pt checkpoint safely and assigns it to `model` (see assign_state_dict)."""
    state_dict = pth_reader.extract_state_dict(pth_reader.read_checkpoint(path, use_torch))
    return assign_state_dict(model, state_dict, layout, verbose)


# Classifier weights of the published layouts: torchvision/MIT/TIN authors (fc, new_fc),
# OpenMMLab (cls_head.fc_cls), TAdaConv (head.out), MobileNetV2 (classifier.1), the TCPNet
# repository's older spelling of new_fc (base_model.classifier), pytorchvideo (blocks.N.proj).
HEAD_KEYS = re.compile(r"(^|\.)(fc|new_fc|fc_cls|head\.out|classifier\.1|base_model\.classifier"
                       r"|blocks\.\d+\.proj)\.weight$"
                       r"|^classifier\.weight$")  # MIT online demo (layout "online")


def head_classes(state_dict, layout=None):
    """Class count of a state dict's classifier, or None when it has none."""
    try:
        canonical, _, _ = layouts.canonicalize(state_dict, layout)
    except ValueError:  # another family's keys: find its classifier by name
        heads = [np.shape(value) for key, value in state_dict.items()
                 if HEAD_KEYS.search(key) and len(np.shape(value)) == 2]
        return int(heads[0][0]) if len(heads) == 1 else None
    fc = canonical.get("fc.weight")
    return None if fc is None else int(fc.shape[0])


def convert_checkpoint(in_path, out_path, arch, frames=8, classes=None, layout=None,
                       normalization="imagenet", use_torch=False, verbose=True,
                       non_local=None, build_model=None):
    """Converts a PyTorch checkpoint to a keras_tin .weights.h5 file.

    Args:
        in_path: the .pth / .pt checkpoint.
        out_path: where to write the Keras weights (must end with .weights.h5).
        arch: an architecture name (keras_tin.architectures): "tin_resnet50",
            "tsm_mobilenetv2", "tada2d_resnet50", "tea_res2net50", "stm_resnet50",
            "tsn_eca_resnet50", an image backbone "resnet50", ...
        frames: frames per clip the checkpoint was trained with (8 for every release).
        classes: classifier size; None takes it from the checkpoint.
        layout: the key layout, or None to detect it (TIN/TSM/TSN: "openmmlab", "authors",
            "torchvision"; other families: their converter's layouts).
        normalization: recorded in the built model ("imagenet", "inception" or None); it has
            no weights, so the .weights.h5 is the same either way.
        use_torch: read the checkpoint with torch.load(weights_only=True).
        non_local: the non-local mode of a non-local TSM checkpoint ("embedded_gaussian",
            "dot_product" or "gaussian"; the keys do not tell the first two apart), else None.
        build_model: arch, **kwargs -> keras model (default:
            keras_tin.applications.records.build_for_architecture, imported when called;
            this module does not import the model builders).

    Returns:
        The Keras model holding the converted weights.
    """
    if not str(out_path).endswith(".weights.h5"):
        raise ValueError(f"out_path must end with .weights.h5. Received: out_path={out_path!r}")
    from keras_tin import architectures

    architectures.parse(arch)  # refuses a malformed name before reading the checkpoint
    if build_model is None:
        from keras_tin.applications.records import build_for_architecture as build_model
    state_dict = pth_reader.extract_state_dict(pth_reader.read_checkpoint(in_path, use_torch))
    if classes is None:
        classes = head_classes(state_dict, layout)
    kwargs = {"non_local": non_local} if non_local else {}
    if layout == "online":  # MIT's online demo checkpoint: TSMMobileNetV2(online=True)
        kwargs["online"] = True
    model = build_model(arch, frames=frames, include_top=classes is not None,
                        classes=classes or 1, normalization=normalization, **kwargs)
    assign_state_dict(model, state_dict, layout, verbose)
    model.save_weights(str(out_path))
    return model


def assign_family_or_backbone(model, state_dict, layout, verbose, layouts_module, module_layer,
                              kind, what, kept_label):
    """The loading shared by the families whose checkpoints are either the family's own or a
    torchvision ImageNet ResNet backbone (STM, MSNet): canonical names from
    `layouts_module.canonicalize`; with a backbone, the layers matching `module_layer` keep
    their initialisation. Returns a dict: layout, form (kind or "imagenet"), temporal (kind,
    None for the backbone), head_loaded. `what` names the family in errors, `kept_label`
    its modules in the verbose report."""
    canonical, layout, form = layouts_module.canonicalize(state_dict, layout)
    variables = keras_variables(model)
    kept_module = []
    if form == "imagenet":  # a backbone: the family's modules keep their initialisation
        kept_module = sorted(f"{layer}/{var}" for layer, var in variables
                             if module_layer.match(layer))
        variables = {key: value for key, value in variables.items()
                     if not module_layer.match(key[0])}
    fc = canonical.get("fc:weight")
    head_loaded = load_head(model, variables, None if fc is None else fc.shape[0], verbose)
    temporal = kind if form == kind else None
    assignments, problems, kept = match_variables(
        canonical, variables, layouts_module.keras_target, head_loaded, temporal)
    if problems:
        name = what if form == kind else "torchvision ResNet backbone"
        raise ValueError(f"Cannot load the {name} checkpoint ({layout} layout) into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    kept[kept_label] = kept_module
    assign(assignments, variables, kept, verbose)
    return {"layout": layout, "form": form, "temporal": temporal, "head_loaded": head_loaded}
