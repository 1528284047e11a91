"""Partial BatchNorm: TSN's fine-tuning recipe, used by the TIN paper."""

import keras


def batchnorm_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batchnorm(model, keep_first=True):
    """Freezes every BatchNormalization of `model` (statistics and scale/shift) but the first.

    Frozen Keras BN layers run in inference mode, which is PyTorch's `bn.eval()` plus
    `requires_grad=False`. Returns the number of layers frozen.

    The BatchNormalization of non-local blocks (layers named *_nl_bn) stays trainable, as
    in mmaction2, whose partial BN freezes nn.BatchNorm2d only (the non-local BN is a
    BN3d): frozen at its initial gamma of 0 a fresh non-local block could never learn.
    """
    bns = [layer for layer in batchnorm_layers(model) if not layer.name.endswith("_nl_bn")]
    if not bns:
        raise ValueError(f"Model '{model.name}' has no BatchNormalization layer to freeze.")
    frozen = bns[1:] if keep_first else bns
    for layer in frozen:
        layer.trainable = False
    return len(frozen)
