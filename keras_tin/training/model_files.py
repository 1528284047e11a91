"""Opening any model a user has for `keras-tin evaluate` / `predict`.

`open_model(spec)` accepts:
- a `.keras` file (e.g. `runs/x/best.keras` from `keras-tin train`);
- a `.weights.h5` checkpoint of a `keras-tin train` run (`runs/x/checkpoints/epoch_NNN.weights.h5`):
  the model is rebuilt from the run's `config.json` and `labels.txt`;
- a `.tflite` file (run with LiteRT) or a SavedModel folder (its `serving_default`
  signature), both as written by `keras-tin export`;
- a pretrained name from `keras_tin.weights.list_pretrained()`.

The exported files come back wrapped so that they look like a Keras classifier to the
evaluation and prediction code: `input_shape`, `output_shape`, `name` and
`predict_on_batch(clips)` on float 0-255 RGB clips.
"""

import os

import numpy as np

EXPORTED_SUFFIXES = (".tflite",)


class _ExportedClassifier:
    """The Keras-classifier face of an exported model: fixed-batch files run in chunks."""

    def __init__(self, path, input_shape, output_shape):
        self.path = path
        self.name = os.path.basename(os.path.normpath(path))
        self.input_shape = (None,) + tuple(input_shape[1:])
        self.output_shape = (None,) + tuple(output_shape[1:])
        self._batch = input_shape[0]  # None: any batch size

    def _run(self, clips):
        raise NotImplementedError

    def predict_on_batch(self, clips):
        clips = np.asarray(clips, np.float32)
        if self._batch is None or clips.shape[0] == self._batch:
            return self._run(clips)
        outputs = []
        for start in range(0, clips.shape[0], self._batch):
            chunk = clips[start:start + self._batch]
            pad = self._batch - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            outputs.append(self._run(chunk)[:self._batch - pad])
        return np.concatenate(outputs)

    def predict(self, clips, verbose=0, batch_size=None):
        return self.predict_on_batch(clips)

    def __call__(self, clips, training=False):
        return self.predict_on_batch(clips)


class TFLiteClassifier(_ExportedClassifier):
    def __init__(self, path):
        from keras_tin.export import TFLiteModel

        self.model = TFLiteModel(path)
        output = tuple(int(d) for d in self.model.output["shape"])
        super().__init__(path, self.model.input_shape, output)

    def _run(self, clips):
        return self.model.invoke(clips)


class SavedModelClassifier(_ExportedClassifier):
    def __init__(self, path):
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"SavedModel {path} has no serving_default signature; export it "
                             f"with `keras-tin export --format saved_model`.")
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["serving_default"]
        (name, spec), = self._fn.structured_input_signature[1].items()
        self._input_name, self._dtype = name, spec.dtype.as_numpy_dtype
        (self._output_name, out_spec), = self._fn.structured_outputs.items()
        super().__init__(path, tuple(spec.shape), tuple(out_spec.shape))

    def _run(self, clips):
        import tensorflow as tf

        if np.issubdtype(self._dtype, np.integer):
            clips = np.clip(np.round(clips), 0, 255)
        result = self._fn(**{self._input_name: tf.constant(clips.astype(self._dtype))})
        return result[self._output_name].numpy().astype(np.float32)


def _run_checkpoint(path):
    """A `keras-tin train` epoch checkpoint: the model rebuilt from its run's files."""
    from keras_tin.training.config import read_config_file
    from keras_tin.training.config import TrainConfig
    from keras_tin.training.prediction import read_labels
    from keras_tin.training.trainer import build_model

    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    config_path = os.path.join(run_dir, "config.json")
    labels_path = os.path.join(run_dir, "labels.txt")
    if not (os.path.isfile(config_path) and os.path.isfile(labels_path)):
        raise ValueError(
            f"{path} is a bare weights file: its architecture is not stored in it. A "
            f"checkpoint of a `keras-tin train` run needs the run's config.json and labels.txt "
            f"two folders up ({run_dir}); otherwise build the model in Python and call "
            f"model.load_weights().")
    config = TrainConfig(**read_config_file(config_path)).replace(weights=None)
    model = build_model(config, len(read_labels(labels_path)), compile=False)
    model.load_weights(path)
    return model


def labels_file_for(spec):
    """The labels.txt `keras-tin train` wrote for the model file `spec`, or None: beside a
    .keras/.tflite file or SavedModel folder, or in the run folder of a checkpoint."""
    spec = os.path.abspath(os.fspath(spec))
    candidates = [os.path.join(os.path.dirname(spec), "labels.txt")]
    if spec.endswith(".h5"):
        candidates.insert(0, os.path.join(os.path.dirname(os.path.dirname(spec)), "labels.txt"))
    if os.path.isdir(spec):
        candidates.insert(0, os.path.join(spec, "labels.txt"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def open_model(spec):
    """The model behind `spec` (see the module docstring); clear errors otherwise."""
    import keras

    import keras_tin.applications  # noqa: F401  (registers the layers for deserialization)

    spec = os.fspath(spec)
    if os.path.isdir(spec):
        if os.path.isfile(os.path.join(spec, "saved_model.pb")):
            return SavedModelClassifier(spec)
        raise ValueError(f"--model {spec!r} is a folder without saved_model.pb: pass a "
                         f".keras, .weights.h5, .tflite file, a SavedModel folder or a "
                         f"pretrained name.")
    if spec.endswith((".keras", ".h5", ".tflite")) and not os.path.isfile(spec):
        raise FileNotFoundError(f"Model file not found. Received: --model {spec!r}. Pass the "
                                f"best.keras/model.keras that `keras-tin train` wrote, a "
                                f"checkpoint, or an exported .tflite file.")
    if spec.endswith(".keras"):
        return keras.saving.load_model(spec, compile=False)
    if spec.endswith(".h5"):
        return _run_checkpoint(spec)
    if spec.endswith(EXPORTED_SUFFIXES):
        return TFLiteClassifier(spec)
    from keras_tin.weights import registry
    from keras_tin.weights.loading import pretrained

    if not registry.is_pretrained_name(spec):
        raise ValueError(f"--model {spec!r} is neither an existing model file (.keras, "
                         f".weights.h5, .tflite, SavedModel folder) nor a pretrained name "
                         f"({', '.join(registry.list_pretrained()[:4])}, ...; see "
                         f"keras_tin.weights.list_pretrained()).")
    return pretrained(spec)
