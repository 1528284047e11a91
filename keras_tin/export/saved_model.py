"""SavedModel export with a serving signature on (batch, frames, H, W, 3) clips."""

import os

from keras_tin.export.serving import check_input_dtype
from keras_tin.export.serving import clip_shape
from keras_tin.export.serving import write_archive


def export_saved_model(model, path, input_dtype="uint8", batch_size=None,
                       endpoint="serve", output_name="predictions", verbose=False,
                       class_names=None, metadata=True):
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
        class_names: one name per class, stored in the keras_tin metadata.
        metadata: False to write no keras_tin metadata.

    Metadata (keras_tin.export.metadata): `assets.extra/keras_tin.json` and a `metadata`
    signature returning {"json": the same string}; read it with
    keras_tin.export.read_metadata(path), or with plain TensorFlow:
        json.loads(loaded.signatures["metadata"]()["json"].numpy())

    Each variable is stored once: variables.data is the size of the weights (it was twice
    that, see keras_tin.export.serving.write_archive).

    Returns:
        `path`.

    Reload with plain TensorFlow:
        loaded = tf.saved_model.load(path)
        probs = loaded.signatures["serving_default"](clips=uint8_clips)["predictions"]
    """
    from keras_tin.export import metadata as metadata_lib
    from keras_tin.export.serving import check_backend

    check_backend()
    check_input_dtype(input_dtype)
    clip_shape(model)  # one static 5-D clip input, else a clear ValueError
    record = None
    if metadata:
        record = metadata_lib.model_metadata(model, class_names, input_dtype=input_dtype,
                                             batch_size=batch_size)
        record["signature"] = {"name": endpoint, "input": "clips", "output": output_name}
    write_archive(model, os.fspath(path), batch_size=batch_size, input_dtype=input_dtype,
                  endpoint=endpoint, output_name=output_name, verbose=verbose,
                  metadata_json=None if record is None else metadata_lib.to_json(record))
    if record is not None:
        metadata_lib.write_saved_model_metadata(path, record)
    return path
