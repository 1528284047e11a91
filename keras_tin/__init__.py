"""keras_tin: Temporal Interlacing Networks and temporal ResNets for Keras 3."""

__version__ = "0.1.0"

import os

# TensorFlow's C++ start-up banner buries our CLI output; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_tin import applications
from keras_tin import layers
from keras_tin import ops
# Registers the SGDL2 optimizer, so `keras.models.load_model` reads a .keras file
# written by `keras-tin train` (its compile config names the optimizer).
from keras_tin.training import optimizers as _optimizers  # noqa: F401
