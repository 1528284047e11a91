"""The serving function every export traces: clips of a fixed layout in, model outputs out.

Exports never see the model's Python call directly: they trace this function under
`keras_tin.ops.dispatch.export_graph()`, so the graph holds only the portable keras.ops
interlace (standard TF ops that lower to TFLite builtins), never the custom TF op, and the
artifact loads where keras_tin is not installed.
"""

INPUT_DTYPES = ("uint8", "float32")

BACKEND_HINT = ("keras_tin exports trace TensorFlow graphs and need the TensorFlow Keras "
                "backend (the backend is {backend!r}): run with KERAS_BACKEND=tensorflow, e.g. "
                "`KERAS_BACKEND=tensorflow keras-tin export --model model.keras ...` after "
                "model.save('model.keras') (keras-tin export itself re-runs under TensorFlow).")


def check_backend():
    """Raises RuntimeError with the one-line fix when Keras does not run on TensorFlow.

    Under JAX, Keras's ExportArchive traces the model through jax2tf, where keras_tin's
    layers fail with a tracer error; under torch there is no TFLite path at all.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(BACKEND_HINT.format(backend=backend))


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
                  output_name="predictions", verbose=False, metadata_json=None):
    """Writes a SavedModel with one endpoint (and serving_default) traced on the portable path.

    Both add_endpoint and write_out run inside export_graph() (portable path, unfused
    TemporalConv2D): tf.saved_model.save traces the endpoint again, and a trace outside
    the context would pick the custom op.

    Each variable is saved once. ExportArchive.track(model) lists the model's Keras
    variables, and write_out separately tracks the tf.Variables the endpoint captures
    (`_all_variables`); with the TensorFlow backend a keras.Variable is a Trackable of its
    own that wraps its tf.Variable, so the checkpoint held every weight twice (once under
    `variables/...`, once under `_all_variables/...`; 5.69 MB of variables.data for the
    2.83 MB of a small TIN-R18). The archive tracks the underlying tf.Variables instead:
    the same objects the endpoint captures, which the checkpoint writes once, and
    `loaded.variables` / `trainable_variables` / `non_trainable_variables` still list them.

    metadata_json: a string; adds a `metadata` signature returning {"json": it}.
    """
    import keras
    import tensorflow as tf

    from keras_tin.ops.dispatch import export_graph

    check_backend()
    spec = input_spec(model, batch_size, input_dtype)
    with export_graph():
        archive = keras.export.ExportArchive()
        archive.add_endpoint(endpoint, serving_fn(model, output_name), input_signature=[spec])
        if metadata_json is not None:
            text = str(metadata_json)
            archive.add_endpoint("metadata", lambda: {"json": tf.constant(text)},
                                 input_signature=[])
        archive.variables.extend(tf_variables(model.variables))
        archive.trainable_variables.extend(tf_variables(model.trainable_variables))
        archive.non_trainable_variables.extend(tf_variables(model.non_trainable_variables))
        archive.write_out(path, verbose=verbose)
    return path


def tf_variables(variables):
    """The tf.Variable behind each keras.Variable (TensorFlow backend)."""
    import tensorflow as tf

    result = []
    for variable in variables:
        value = getattr(variable, "value", variable)
        result.append(value if isinstance(value, tf.Variable) else variable)
    return result
