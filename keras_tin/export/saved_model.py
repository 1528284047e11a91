"""SavedModel export with a serving signature on (batch, frames, H, W, 3) clips."""

import os

from keras_tin.export.serving import write_archive


def export_saved_model(model, path, input_dtype="uint8", batch_size=None,
                       endpoint="serve", output_name="predictions", verbose=False):
    """Writes `model` as a TensorFlow SavedModel that needs neither Keras nor keras_tin.

    Signature: `serving_default` (and `endpoint`) take `clips` of shape
    (batch_size, frames, H, W, 3) and return `{output_name: outputs}` as float32.
    With input_dtype="uint8" (default) clips are raw RGB bytes, cast to float32 in the
    graph; the model's own normalisation layer then applies mean/std. With "float32"
    clips are RGB on the 0-255 scale.

    Args:
        model: a keras_tin model (or any Keras model with one 5-D clip input whose
            frames, height and width are static).
        path: output directory.
        input_dtype: "uint8" or "float32".
        batch_size: None for any batch size, or a fixed batch size.
        endpoint: name of the endpoint/signature besides `serving_default`.
        output_name: key of the output in the signature's result dict.
        verbose: print the endpoints Keras writes.

    Returns:
        `path`.

    Reload with plain TensorFlow:
        loaded = tf.saved_model.load(path)
        probs = loaded.signatures["serving_default"](clips=uint8_clips)["predictions"]
    """
    write_archive(model, os.fspath(path), batch_size=batch_size, input_dtype=input_dtype,
                  endpoint=endpoint, output_name=output_name, verbose=verbose)
    return path
