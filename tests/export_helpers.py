"""Small models with realistic activation statistics, for export tests.

A freshly initialised network has BatchNorm moving statistics (0, 1) that do not match
its activations, so its logits are nearly constant and quantization comparisons mean
little. `recalibrate_batchnorm` sets every BN's moving mean/variance to the statistics
of real clips (one training-mode pass with momentum 0), as a trained network would have.
`perturb_temporal_parameters` makes the TIN modules' zero-initialised biases non-zero.
"""

import keras
import numpy as np

from keras_tin.datasets.synthetic_motion import make_clips


def clips(num, frames=8, size=32, seed=0):
    """Synthetic motion clips, float32 RGB on the 0-255 scale."""
    x, _ = make_clips(num, frames=frames, size=size, seed=seed)
    return x.astype(np.float32)


def recalibrate_batchnorm(model, x):
    bns = [layer for layer in model._flatten_layers(include_self=False)
           if isinstance(layer, keras.layers.BatchNormalization)]
    rng = np.random.default_rng(0)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
        # Varied scales and shifts, so channels differ the way trained ones do.
        bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.2, bn.beta.shape).astype("float32"))
    model(x, training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return model


def perturb_temporal_parameters(model, scale=0.1):
    """Adds noise to every TIN OffsetNet/WeightNet parameter, biases included.

    Fresh biases are exactly zero, and the TFLite converter folds `x + 0` away, so an
    export of a fresh model can convert where a trained one does not (it once failed on
    the OffsetNet conv bias of any trained TIN). Exports are tested on trained-like values.
    """
    from keras_tin.layers import TemporalInterlace

    rng = np.random.default_rng(1)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, TemporalInterlace):
            for variable in layer.weights:
                noise = rng.normal(0.0, scale, variable.shape).astype("float32")
                variable.assign(variable.numpy() + noise)
    return model


def build(constructor, frames=8, size=32, classes=8, calibration_clips=None, **kwargs):
    keras.utils.set_random_seed(0)
    model = constructor(frames=frames, input_shape=(frames, size, size, 3), classes=classes,
                        classifier_activation=None, **kwargs)
    if calibration_clips is None:
        calibration_clips = clips(8, frames, size, seed=100)
    perturb_temporal_parameters(model)
    return recalibrate_batchnorm(model, calibration_clips)


def tiny(constructor, classes=3, frames=4, size=32, **kwargs):
    """A ResNet sized for fast export tests (base_filters=16, 4 frames, 32 px), with the
    trained-like statistics of `build`."""
    return build(constructor, frames=frames, size=size, classes=classes, base_filters=16,
                 **kwargs)
