"""keras_tin: Temporal Interlacing Networks and temporal ResNets for Keras 3."""

__version__ = "0.1.0"

import os

# TensorFlow's C++ start-up banner buries our CLI output; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_tin import layers
from keras_tin import ops
# Registers the SGDL2 optimizer, so `keras.models.load_model` reads a .keras file
# written by `keras-tin train` (its compile config names the optimizer).
from keras_tin.training import optimizers as _optimizers  # noqa: F401

# The heavier subpackages load on first use, so `import keras_tin` stays light and
# `keras_tin.applications.TINResNet50(...)`, `keras_tin.weights.pretrained(...)`,
# `keras_tin.data.load_dataset(...)` etc. still work. (applications is lazy too, so that
# importing keras_tin.weights does not import the model builders that depend on it.)
_LAZY_SUBPACKAGES = ("applications", "data", "datasets", "export", "training", "utils",
                     "weights")


def __getattr__(name):
    if name in _LAZY_SUBPACKAGES:
        import importlib
        return importlib.import_module(f"keras_tin.{name}")
    raise AttributeError(f"module 'keras_tin' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_SUBPACKAGES))
