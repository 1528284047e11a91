"""The serving function every export traces: clips of a fixed layout in, model outputs out.

Exports never see the model's Python call directly: they trace this function under
`keras_tin.ops.dispatch.export_graph()`, so the graph holds only the portable keras.ops
interlace (standard TF ops that lower to TFLite builtins), never the custom TF op, and the
artifact loads where keras_tin is not installed.
"""

INPUT_DTYPES = ("uint8", "float32")


def check_input_dtype(input_dtype):
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}. "
                         f"Received: input_dtype={input_dtype!r}")


def clip_shape(model):
    """(frames, H, W, 3) of the model's clip input; every dimension must be static."""
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    if len(shapes) != 1 or len(shapes[0]) != 5:
        raise ValueError(
            "Export expects a model with one clip input (batch, frames, H, W, 3). "
            f"Received: input_shape={model.input_shape}")
    shape = tuple(shapes[0][1:])
    if any(d is None for d in shape):
        raise ValueError(
            "Export needs static frames, height and width (TFLite allocates tensors once). "
            f"Received: input_shape={model.input_shape}; build the model with "
            "input_shape=(frames, H, W, 3).")
    return shape


def input_spec(model, batch_size, input_dtype):
    import tensorflow as tf
    check_input_dtype(input_dtype)
    return tf.TensorSpec((batch_size,) + clip_shape(model), tf.as_dtype(input_dtype),
                         name="clips")


def serving_fn(model, output_name="predictions"):
    """A Python callable clips -> {output_name: outputs}, casting clips to float32.

    The model itself normalises RGB in [0, 255] (its `normalization` argument), so a
    uint8 clip only needs a cast; float32 clips must already be on the 0-255 scale.
    """
    import tensorflow as tf

    def serve(clips):
        x = tf.cast(clips, tf.float32)
        y = model(x, training=False)
        return {output_name: tf.cast(y, tf.float32)}

    return serve


def write_archive(model, path, batch_size=None, input_dtype="uint8", endpoint="serve",
                  output_name="predictions", verbose=False):
    """Writes a SavedModel with one endpoint (and serving_default) traced on the portable path.

    Both add_endpoint and write_out run inside export_graph() (portable path, unfused
    TemporalConv2D): tf.saved_model.save traces the endpoint again, and a trace outside
    the context would pick the custom op.
    """
    import keras

    from keras_tin.ops.dispatch import export_graph

    spec = input_spec(model, batch_size, input_dtype)
    with export_graph():
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(endpoint, serving_fn(model, output_name), input_signature=[spec])
        archive.write_out(path, verbose=verbose)
    return path
