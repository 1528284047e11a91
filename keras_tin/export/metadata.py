"""What an exported model says about itself: class names, clip layout, input scale.

Every export stores one JSON object (see `model_metadata`), the same for all formats:

    {"format": "keras_tin", "version": 1, "keras_tin_version": "0.1.0",
     "model": "tin_resnet50", "class_names": ["abseiling", ...], "num_classes": 400,
     "frames": 8, "input_size": [224, 224], "input_shape": [1, 8, 224, 224, 3],
     "input_dtype": "float32", "input_range": [0, 255],
     "normalization": {"name": "imagenet", "mean": [...], "std": [...]},
     "output": "probabilities", "output_dtype": "float32", "quantize": "int8"}

`input_range` is [0, 255] when the model normalises inside (its `normalization` layer:
callers pass raw RGB, never mean/std-normalised clips); None when the model was built with
normalization=None and takes clips already normalised as it was trained. `output` is
"probabilities" (softmax head), "logits" (classifier_activation=None) or the head's
activation name; `class_names` is None when no label list was given.

Where it is stored:
- TFLite: an entry named "keras_tin" in the flatbuffer's `metadata` list (the table where
  the converter keeps "min_runtime_version"; tflite-support uses "TFLITE_METADATA"), whose
  buffer holds the UTF-8 JSON. Runtimes ignore metadata entries; the file runs unchanged.
- SavedModel: `assets.extra/keras_tin.json` (the directory TF Serving reserves for files
  that live with a model but are not loaded by its graph), and a `metadata` signature
  that returns {"json": that string}, so it survives wherever the graph goes.
- .keras: a `keras_tin.json` entry in the zip (`write_keras_metadata`;
  keras.saving.load_model ignores entries it does not know). Files without it get their
  layout from the zip's config.json and their class names from `labels.txt` beside the
  file (what `keras-tin train` writes).

`read_metadata(path)` reads any of them; it needs neither TensorFlow nor keras_tin's
models for .tflite (the flatbuffer schema of ai-edge-litert or TensorFlow), .keras files
and SavedModels exported by keras_tin.
"""

import json
import os
import zipfile

import numpy as np

METADATA_NAME = "keras_tin"  # TFLite metadata entry / file stem
METADATA_FILE = "keras_tin.json"
SAVED_MODEL_DIR = "assets.extra"
SAVED_MODEL_SIGNATURE = "metadata"
VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"
INPUT_RANGE = [0, 255]


def _version():
    try:
        from keras_tin import __version__
    except ImportError:  # pragma: no cover
        return None
    return __version__


# ---------------------------------------------------------------------------------------
# Building the record from a model


def normalization_of(model):
    """{"name", "mean", "std"} of the model's input normalisation layer, or None.

    keras_tin models normalise RGB on 0-255 with a keras.layers.Normalization named
    "normalization" (see keras_tin.applications.video_model); "name" is "imagenet" or
    "inception" when mean/std are those presets, else None.
    """
    import keras

    layer = None
    for candidate in model._flatten_layers(include_self=False):
        if isinstance(candidate, keras.layers.Normalization):
            layer = candidate
            break
    if layer is None:
        return None
    config = layer.get_config()
    if config.get("invert"):
        return None
    mean, variance = config.get("mean"), config.get("variance")
    if mean is None or variance is None:  # adapted: read the computed statistics
        mean = np.ravel(np.asarray(layer.mean)).tolist()
        variance = np.ravel(np.asarray(layer.variance)).tolist()
    mean = [float(m) for m in np.ravel(mean)]
    std = [float(np.sqrt(v)) for v in np.ravel(variance)]
    return {"name": preset_name(mean, std), "mean": mean, "std": std}


def preset_name(mean, std):
    from keras_tin.applications.video_model import NORMALIZATIONS

    for name, (preset_mean, preset_std) in NORMALIZATIONS.items():
        if (len(mean) == len(preset_mean) and np.allclose(mean, preset_mean, atol=1e-3)
                and np.allclose(std, preset_std, atol=1e-3)):
            return name
    return None


def _output_kind(model):
    last = model.layers[-1] if model.layers else None
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", None) or (activation if isinstance(activation, str)
                                                    else None)
    if name in (None, "linear"):
        return "logits"
    if name == "softmax":
        return "probabilities"
    return name


def model_metadata(model, class_names=None, input_dtype="float32", output_dtype="float32",
                   batch_size=None, quantize=None, **extra):
    """The metadata dict of `model` as exported (see the module docstring).

    Raises ValueError when `class_names` does not have one name per output class.
    """
    shape = tuple(model.input_shape)
    output_shape = tuple(model.output_shape)
    num_classes = int(output_shape[-1]) if len(output_shape) == 2 and output_shape[-1] else None
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if num_classes is not None and len(class_names) != num_classes:
            raise ValueError(
                f"The label list has {len(class_names)} names but the model predicts "
                f"{num_classes} classes; pass the label list of the dataset it was trained on.")
    normalization = normalization_of(model)
    record = {
        "format": METADATA_NAME,
        "version": VERSION,
        "keras_tin_version": _version(),
        "model": model.name,
        "class_names": class_names,
        "num_classes": num_classes,
        "frames": int(shape[1]) if len(shape) == 5 and shape[1] else None,
        "input_size": [int(d) for d in shape[2:4]] if len(shape) == 5 and None not in shape[2:4]
        else None,
        "input_shape": [batch_size] + [None if d is None else int(d) for d in shape[1:]],
        "input_dtype": input_dtype,
        "input_range": list(INPUT_RANGE) if normalization is not None else None,
        "normalization": normalization,
        "output": _output_kind(model),
        "output_dtype": output_dtype,
        "quantize": quantize,
    }
    record.update(extra)
    return record


def expected_input_range(model):
    """(0, 255) when `model` normalises its input itself (it takes raw RGB), else None."""
    return tuple(INPUT_RANGE) if normalization_of(model) is not None else None


def to_json(metadata):
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------------------------------
# TFLite


def _schema():
    """The TFLite flatbuffer schema module: TensorFlow's, else ai-edge-litert's."""
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:
        try:
            from ai_edge_litert import schema_py_generated as schema
        except ImportError as e:
            raise ImportError("Reading .tflite metadata needs the TFLite flatbuffer schema: "
                              "pip install ai-edge-litert (or tensorflow).") from e
    return schema


def _reader_schema():
    """For reading prefer ai-edge-litert's schema, which does not import TensorFlow."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return _schema()
    return schema


def _aligned_buffer_class(schema):
    class AlignedBufferT(schema.BufferT):
        """A BufferT whose data is packed 16-byte aligned, as the converter writes it
        (the generated Pack aligns only to the element size, 1 byte)."""

        def Pack(self, builder):
            data = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), 16)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def add_tflite_metadata(flatbuffer, metadata, name=METADATA_NAME):
    """`flatbuffer` (bytes) with `metadata` (a dict, stored as JSON) as a metadata entry.

    An existing entry of that name is replaced. Tensors, operators and signatures are
    unchanged; buffers stay 16-byte aligned.
    """
    import flatbuffers

    schema = _schema()
    text = metadata if isinstance(metadata, (bytes, bytearray)) else to_json(metadata).encode()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise ValueError("Cannot add metadata to a .tflite file whose buffers lie outside "
                         "the flatbuffer (a > 2 GB model).")
    aligned = _aligned_buffer_class(schema)

    def to_aligned(buffer):
        copy = aligned()
        copy.data, copy.offset, copy.size = buffer.data, buffer.offset, buffer.size
        return copy

    model.buffers = [to_aligned(b) for b in (model.buffers or [])]
    name_bytes = name.encode()
    entries = [m for m in (model.metadata or []) if m.name not in (name, name_bytes)]
    new_buffer = aligned()
    new_buffer.data = np.frombuffer(bytes(text), dtype=np.uint8)
    model.buffers.append(new_buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    entries.append(entry)
    model.metadata = entries
    builder = flatbuffers.Builder(len(flatbuffer) + len(text) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def tflite_metadata_entries(flatbuffer):
    """{name: bytes} of every metadata entry of a .tflite flatbuffer."""
    schema = _reader_schema()
    buf = bytearray(flatbuffer)
    model = schema.Model.GetRootAs(buf, 0)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        data = buffer.DataAsNumpy() if not buffer.DataIsNone() else np.zeros(0, np.uint8)
        if buffer.Offset() > 1:  # stored after the flatbuffer
            data = np.frombuffer(bytes(buf[buffer.Offset():buffer.Offset() + buffer.Size()]),
                                 np.uint8)
        entries[entry.Name().decode()] = np.asarray(data, np.uint8).tobytes()
    return entries


def read_tflite_metadata(model):
    """The keras_tin metadata dict of a .tflite path or flatbuffer, or None."""
    data = model if isinstance(model, (bytes, bytearray)) else open(os.fspath(model),
                                                                     "rb").read()
    text = tflite_metadata_entries(data).get(METADATA_NAME)
    return None if text is None else json.loads(text.decode("utf-8"))


# ---------------------------------------------------------------------------------------
# SavedModel


def write_saved_model_metadata(path, metadata):
    """Writes `assets.extra/keras_tin.json` into the SavedModel directory `path`."""
    directory = os.path.join(os.fspath(path), SAVED_MODEL_DIR)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as f:
        f.write(to_json(metadata))


def read_saved_model_metadata(path):
    """The metadata dict of a SavedModel: assets.extra/keras_tin.json, else the `metadata`
    signature (loads the SavedModel with TensorFlow), else None."""
    path = os.fspath(path)
    file = os.path.join(path, SAVED_MODEL_DIR, METADATA_FILE)
    if os.path.isfile(file):
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    import tensorflow as tf

    signatures = tf.saved_model.load(path).signatures
    if SAVED_MODEL_SIGNATURE not in signatures:
        return None
    text = signatures[SAVED_MODEL_SIGNATURE]()["json"].numpy()
    return json.loads(text.decode("utf-8"))


# ---------------------------------------------------------------------------------------
# .keras


def write_keras_metadata(path, metadata):
    """Adds (or replaces) `keras_tin.json` in the .keras zip `path`.

    For whoever saves .keras files (e.g. the trainer, next to its labels.txt):
        model.save(path); write_keras_metadata(path, model_metadata(model, class_names))
    """
    path = os.fspath(path)
    text = to_json(metadata)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if METADATA_FILE in names:  # zipfile cannot replace an entry: rewrite the archive
        tmp = path + ".tmp"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if item.filename != METADATA_FILE:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(METADATA_FILE, text)
        os.replace(tmp, path)
    else:
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(METADATA_FILE, text)


def _layers(config):
    """Layer configs of a (possibly nested) functional/sequential model config."""
    for layer in config.get("config", {}).get("layers", []) or []:
        yield layer
        if layer.get("class_name") in ("Functional", "Model", "Sequential"):
            yield from _layers(layer)


def _keras_config_metadata(config):
    """What the config.json of a .keras file says about input, normalisation and output."""
    layers = list(_layers(config))
    shape = None
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            cfg = layer.get("config", {})
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            break
    normalization = None
    for layer in layers:
        if layer.get("class_name") == "Normalization":
            cfg = layer.get("config", {})
            if cfg.get("mean") is not None and cfg.get("variance") is not None \
                    and not cfg.get("invert"):
                mean = [float(m) for m in np.ravel(cfg["mean"])]
                std = [float(np.sqrt(v)) for v in np.ravel(cfg["variance"])]
                try:
                    name = preset_name(mean, std)
                except ImportError:  # pragma: no cover
                    name = None
                normalization = {"name": name, "mean": mean, "std": std}
            break
    num_classes, output = None, None
    for layer in layers:
        if layer.get("class_name") == "Dense" and layer.get("name") == "fc":
            num_classes = layer.get("config", {}).get("units")
        if layer.get("name") == "predictions":
            activation = layer.get("config", {}).get("activation")
            output = {"linear": "logits", None: "logits",
                      "softmax": "probabilities"}.get(activation, activation)
    shape = list(shape) if shape else None
    return {
        "model": config.get("config", {}).get("name"),
        "num_classes": num_classes,
        "frames": shape[1] if shape and len(shape) == 5 else None,
        "input_size": shape[2:4] if shape and len(shape) == 5 else None,
        "input_shape": shape,
        "input_dtype": "float32",
        "input_range": list(INPUT_RANGE) if normalization is not None else None,
        "normalization": normalization,
        "output": output,
        "output_dtype": "float32",
        "quantize": None,
    }


def read_keras_metadata(path):
    """The metadata of a .keras file: its keras_tin.json entry if it has one, else the
    layout from its config.json and class names from labels.txt beside the file."""
    path = os.fspath(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if METADATA_FILE in names:
            return json.loads(archive.read(METADATA_FILE).decode("utf-8"))
        config = json.loads(archive.read("config.json").decode("utf-8"))
    record = {"format": METADATA_NAME, "version": VERSION, "keras_tin_version": None,
              "class_names": None}
    record.update(_keras_config_metadata(config))
    labels = os.path.join(os.path.dirname(os.path.abspath(path)), "labels.txt")
    if os.path.isfile(labels):
        try:
            from keras_tin.weights.labels import read_label_file
            record["class_names"] = list(read_label_file(labels))
        except ImportError:  # pragma: no cover
            with open(labels, encoding="utf-8") as f:
                record["class_names"] = [line.strip() for line in f if line.strip()]
    return record


# ---------------------------------------------------------------------------------------


def read_metadata(path):
    """The keras_tin metadata (a dict, see the module docstring) of an exported model.

    Args:
        path: a .tflite file (or its bytes), a SavedModel directory, or a .keras file.

    Returns:
        The dict, or None for a .tflite / SavedModel that keras_tin did not write (or that
        an older keras_tin wrote without metadata). A .keras file always gives a dict:
        written metadata if present, else its config and labels.txt beside it.
    """
    if isinstance(path, (bytes, bytearray)):
        return read_tflite_metadata(path)
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path} is a directory without saved_model.pb (not a SavedModel).")
        return read_saved_model_metadata(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file or SavedModel: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == TFLITE_IDENTIFIER:
        return read_tflite_metadata(path)
    if zipfile.is_zipfile(path):
        return read_keras_metadata(path)
    raise ValueError(f"{path}: not a .tflite flatbuffer, a SavedModel directory or a "
                     ".keras file.")
