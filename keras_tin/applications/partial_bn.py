"""Partial BatchNorm: TSN's fine-tuning recipe, used by the TIN paper."""

import keras


def batchnorm_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batchnorm(model, keep_first=True):
    """Freezes every BatchNormalization of `model` (statistics and scale/shift) but the first.

    Frozen Keras BN layers run in inference mode, which is PyTorch's `bn.eval()` plus
    `requires_grad=False`. Returns the number of layers frozen.
    """
    bns = batchnorm_layers(model)
    if not bns:
        raise ValueError(f"Model '{model.name}' has no BatchNormalization layer to freeze.")
    frozen = bns[1:] if keep_first else bns
    for layer in frozen:
        layer.trainable = False
    return len(frozen)
