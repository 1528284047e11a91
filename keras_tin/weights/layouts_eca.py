"""The official ECA-Net ResNet checkpoints (BangguWu/ECANet), as canonical-name rules.

The released ImageNet files (eca_resnet18_k3577, eca_resnet34_k3357, eca_resnet50_k3557,
eca_resnet101_k3357, ...) are training checkpoints of a DataParallel model:
{'state_dict': {'module.conv1.weight', ..., 'module.fc.weight'}}: torchvision ResNet names
(layouts_torchvision.py) plus, in every block, the ECA Conv1d weight
`layerL.b.eca.conv.weight` of shape (1, 1, k). layouts.py strips `module.` and detects the
"torchvision" layout; these rules add the ECA key, canonical `layerL.b.eca.weight`, which
goes to the Keras layer f"layer{L}_{b}_eca" (keras_tin.layers.eca.ECA), kernel (k, 1, 1).

Loading rules (keras_tin.weights.convert): an ECA checkpoint into a model built with
channel_attention="eca" loads the backbone and, when the class count matches, the classifier
(TIN modules keep their initialisation, announced, as for any ImageNet backbone); into a
model without ECA it is refused with `hints` naming channel_attention="eca". A plain
torchvision ResNet into an ECA model loads, the ECA kernels keeping their initialisation
(announced): ECA added to a pretrained ResNet, as one fine-tunes it.
"""

import re

import numpy as np

BLOCK = r"(layer[1-4]\.\d+)"

RULES = [
    (rf"^{BLOCK}\.eca\.conv\.weight$", r"\1.eca.weight"),
]

# Conv1d weight [out, in, k] = (1, 1, k) -> Keras kernel [k, in, out] = (k, 1, 1).
KERAS_AXES = (2, 1, 0)
_CANONICAL = re.compile(r"^layer([1-4])\.(\d+)\.eca\.weight$")


def keras_target(block):
    """(Keras layer, variable, transpose axes) of block `block`'s ("layer2_0") ECA kernel."""
    return f"{block}_eca", "kernel", KERAS_AXES


def _per_stage(sizes):
    """{stage 1-4: {k, ...}} -> a tuple over the 4 stages: k, a sorted tuple where a stage
    mixes sizes, None for a stage without ECA; None when no stage has ECA."""
    if not sizes:
        return None
    return tuple(None if stage not in sizes else
                 next(iter(sizes[stage])) if len(sizes[stage]) == 1 else
                 tuple(sorted(sizes[stage])) for stage in range(1, 5))


def kernel_sizes(canonical):
    """The checkpoint's ECA kernel size per stage (layer1..layer4), see _per_stage; None
    without ECA."""
    sizes = {}
    for key, value in canonical.items():
        match = _CANONICAL.match(key)
        if match:
            sizes.setdefault(int(match.group(1)), set()).add(int(np.shape(value)[-1]))
    return _per_stage(sizes)


def _model_kernel_sizes(variables):
    sizes = {}
    for (layer, name), variable in variables.items():
        match = re.match(r"^layer([1-4])_\d+_eca$", layer)
        if match and name == "kernel":
            sizes.setdefault(int(match.group(1)), set()).add(int(variable.shape[0]))
    return _per_stage(sizes)


def hints(canonical, variables):
    """What to build instead when a checkpoint and a model disagree about ECA, as texts to
    add to a refusal (empty when they agree). canonical: the checkpoint's canonical
    tensors; variables: {(layer, variable name): variable} of the model."""
    ckpt = kernel_sizes(canonical)
    model = _model_kernel_sizes(variables)
    keys = sorted(key for key in canonical if _CANONICAL.match(key))
    if ckpt and not model:
        return [f"the checkpoint has ECA channel attention ({len(keys)} keys such as "
                f"{keys[:2]}, e.g. 'module.layer1.0.eca.conv.weight' in the official "
                f"ECA-ResNet files) but the model has none; build it with "
                f"channel_attention='eca', eca_kernel_sizes={ckpt}"]
    if model and not ckpt:
        return ["the model has ECA channel attention (channel_attention='eca') but the "
                "checkpoint has none; build it with channel_attention=None"]
    if ckpt and model and ckpt != model:
        return [f"the checkpoint's ECA kernel sizes per stage are {ckpt} but the model's are "
                f"{model}; build it with channel_attention='eca', eca_kernel_sizes={ckpt}"]
    return []
