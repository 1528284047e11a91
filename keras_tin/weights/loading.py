"""Loading weights into a keras_tin model from a local file."""

import os


def load_weights(model, weights):
    """Loads `weights` (a local .weights.h5 or .keras file) into `model`."""
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(
            f"weights must be None or the path of an existing .weights.h5 / .keras file. "
            f"Received: weights={weights!r} (no such file)")
    if path.endswith(".keras"):
        import keras
        source = keras.saving.load_model(path, compile=False)
        model.set_weights(source.get_weights())
    elif path.endswith(".h5"):
        model.load_weights(path)
    else:
        raise ValueError(f"Unsupported weights file {path!r}: expected .weights.h5 or .keras.")
    return model
