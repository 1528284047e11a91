"""`keras-tin export`: a model to SavedModel or TFLite; prints the file size and TFLite ops.

Exports trace TensorFlow graphs. Under another Keras backend (KERAS_BACKEND=jax) the
command says so in one line and re-runs itself in a subprocess with
KERAS_BACKEND=tensorflow (the .keras file or constructor is loaded again there).

Options that would not apply are refused (one line, exit status 1) instead of being
ignored: --frames/--size/--classes that differ from a .keras model's own, --weights with
a .keras model, --quantize/--calibration/--output-dtype with --format saved_model, and
--calibration without --quantize int8.
"""

import os
import sys

CONSTRUCTORS = ("TINResNet18", "TINResNet34", "TINResNet50", "TINResNet101",
                "TSMResNet18", "TSMResNet34", "TSMResNet50", "TSMResNet101",
                "TSNResNet18", "TSNResNet34", "TSNResNet50", "TSNResNet101",
                "TINMobileNetV2", "TSMMobileNetV2", "TSNMobileNetV2")
DEFAULT_FRAMES, DEFAULT_SIZE, DEFAULT_CLASSES, DEFAULT_CALIBRATION_CLIPS = 8, 224, 400, 100
SUBPROCESS_FLAG = "KERAS_TIN_EXPORT_SUBPROCESS"


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help=f"a .keras file, or a constructor: {', '.join(CONSTRUCTORS)}")
    parser.add_argument("--weights", default=None,
                        help="with a constructor: pretrained name or local weights file")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per clip, for a constructor (default: the pretrained "
                             f"record's, else {DEFAULT_FRAMES}); a .keras model keeps its own")
    parser.add_argument("--size", type=int, default=None,
                        help=f"frame size, for a constructor (default {DEFAULT_SIZE}); a "
                             ".keras model keeps its own")
    parser.add_argument("--classes", type=int, default=None,
                        help=f"classes, for a constructor (default: the pretrained record's, "
                             f"else {DEFAULT_CLASSES}); a .keras model keeps its own")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="tflite")
    parser.add_argument("--quantize", choices=("none", "float16", "dynamic", "int8"),
                        default=None, help="TFLite quantization (default none: float32)")
    parser.add_argument("--input-dtype", choices=("uint8", "float32", "int8"), default=None,
                        help="clip dtype (default: uint8 for SavedModel, float32 for TFLite). "
                             "With --quantize int8, uint8 takes the raw RGB bytes as a "
                             "quantized input (scale 1, zero point 0) and int8 takes "
                             "byte - 128")
    parser.add_argument("--output-dtype", choices=("float32", "uint8", "int8"), default=None,
                        help="TFLite output dtype (default float32; uint8/int8 need "
                             "--quantize int8: the output keeps its scale and zero point)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="static batch (default: dynamic for SavedModel, 1 for TFLite)")
    parser.add_argument("--calibration", default=None,
                        help="int8 calibration clips, raw RGB on 0-255: 'synthetic' "
                             "(synthetic motion clips), a .npy file of clips (N, frames, H, "
                             "W, 3), or DATASET:ROOT for keras_tin.data.load_dataset (e.g. "
                             "something-v2:/data/sthv2)")
    parser.add_argument("--calibration-clips", type=int, default=None,
                        help=f"clips used for int8 calibration (default "
                             f"{DEFAULT_CALIBRATION_CLIPS})")
    parser.add_argument("--labels", default=None,
                        help="class names stored in the exported file: a label file or a "
                             "packaged list name ('kinetics-400', 'ucf101', ...). Default: "
                             "labels.txt beside a .keras model, or the pretrained weights' "
                             "label list")
    parser.add_argument("--output", "-o", required=True, help="output file or directory")


def _is_model_file(spec):
    return spec.endswith(".keras") or os.path.isfile(spec)


def _check_options(args):
    """Refuses options that the chosen model/format would ignore (before any loading)."""
    tflite = args.format == "tflite"
    quantize = args.quantize or "none"
    if not tflite:
        if quantize != "none":
            raise SystemExit(f"--quantize {quantize} applies to --format tflite only; a "
                             "SavedModel stores the float32 model.")
        if args.output_dtype not in (None, "float32"):
            raise SystemExit("--output-dtype applies to --format tflite --quantize int8 only.")
        if args.input_dtype == "int8":
            raise SystemExit("--input-dtype int8 applies to --format tflite --quantize int8 "
                             "only (a SavedModel takes uint8 or float32 clips).")
    if quantize != "int8":
        for flag, value in (("--calibration", args.calibration),
                            ("--calibration-clips", args.calibration_clips)):
            if value is not None:
                raise SystemExit(f"{flag} applies to --quantize int8 only.")
        if tflite and (args.input_dtype == "int8" or args.output_dtype not in (None, "float32")):
            raise SystemExit("--input-dtype int8 and --output-dtype uint8/int8 need "
                             "--quantize int8.")
    if _is_model_file(args.model) and args.weights is not None:
        raise SystemExit("--weights applies to a constructor; a .keras model keeps its "
                         "own weights.")


def _check_keras_shape(args, model):
    """--frames/--size/--classes must match a .keras model (its shapes are fixed)."""
    shape = tuple(model.input_shape)
    frames, height, width = (shape[1:4] if len(shape) == 5 else (None, None, None))
    classes = model.output_shape[-1]
    problems = []
    if args.frames is not None and args.frames != frames:
        problems.append(f"--frames {args.frames} (it takes {frames})")
    if args.size is not None and (args.size, args.size) != (height, width):
        problems.append(f"--size {args.size} (it takes {height}x{width})")
    if args.classes is not None and args.classes != classes:
        problems.append(f"--classes {args.classes} (it predicts {classes})")
    if problems:
        raise SystemExit(f"{args.model} is a saved model whose shapes are fixed: "
                         f"{', '.join(problems)} cannot apply; drop the option or build "
                         "the model with a constructor.")


def _load_model(args):
    import keras

    if _is_model_file(args.model):
        import keras_tin  # noqa: F401  (registers the layers for deserialization)
        model = keras.saving.load_model(args.model, compile=False)
        _check_keras_shape(args, model)
        return model
    if args.model not in CONSTRUCTORS:
        raise SystemExit(f"--model must be a .keras file or one of {CONSTRUCTORS}. "
                         f"Received: --model={args.model!r}")
    from keras_tin import applications
    build = getattr(applications, args.model)
    frames, classes = DEFAULT_FRAMES, DEFAULT_CLASSES
    from keras_tin.weights.registry import get_record
    from keras_tin.weights.registry import is_pretrained_name
    if is_pretrained_name(args.weights):  # the checkpoint's own frames and classes
        record = get_record(args.weights)
        frames, classes = record.get("frames") or frames, record.get("classes") or classes
    frames = args.frames or frames
    size = args.size or DEFAULT_SIZE
    return build(frames=frames, input_shape=(frames, size, size, 3),
                 classes=args.classes or classes, weights=args.weights)


def _pretrained_labels(name):
    """(names, source) of a pretrained record: its `labels` field, else its dataset's
    packaged list when every publisher uses the same order for it; (None, why) else."""
    from keras_tin.weights import get_labels
    from keras_tin.weights import get_record
    from keras_tin.weights.labels import SAME_ORDER_FOR_ALL_PUBLISHERS

    record = get_record(name)
    if record.get("labels"):
        return get_labels(record["labels"]), f"the {name} record ({record['labels']})"
    dataset = str(record.get("dataset", "")).lower()
    if dataset in SAME_ORDER_FOR_ALL_PUBLISHERS:
        return get_labels(dataset), f"the {name} record's dataset ({dataset})"
    return None, f"the {name} record names no label order"


def find_labels(args):
    """(class names or None, where they came from) for the exported file's metadata."""
    if args.labels:
        from keras_tin.weights import get_labels
        try:
            return get_labels(args.labels), args.labels
        except ValueError as e:
            raise SystemExit(f"--labels: {e}") from None
    if _is_model_file(args.model):
        # The names saved inside the .keras file (write_keras_metadata), else labels.txt
        # beside it (what `keras-tin train` writes).
        import zipfile

        from keras_tin.export import metadata as metadata_lib
        if zipfile.is_zipfile(args.model):
            with zipfile.ZipFile(args.model) as archive:
                embedded = metadata_lib.METADATA_FILE in archive.namelist()
            if embedded:
                names = metadata_lib.read_keras_metadata(args.model).get("class_names")
                if names:
                    return names, f"{args.model} ({metadata_lib.METADATA_FILE})"
        labels_txt = os.path.join(os.path.dirname(os.path.abspath(args.model)), "labels.txt")
        if os.path.isfile(labels_txt):
            from keras_tin.weights import read_label_file
            return list(read_label_file(labels_txt)), labels_txt
        return None, None
    if args.weights is not None:
        from keras_tin.weights.registry import is_pretrained_name
        if is_pretrained_name(args.weights):
            names, source = _pretrained_labels(args.weights)
            return names, source if names else None
    return None, None


def _log(text):
    print(text, file=sys.stderr, flush=True)


def _calibration_clips(args, clip_shape):
    spec = args.calibration
    frames, height, width, _ = clip_shape
    count = args.calibration_clips or DEFAULT_CALIBRATION_CLIPS
    if spec is None:
        raise SystemExit("--quantize int8 needs --calibration (clips to calibrate on).")
    if spec == "synthetic":
        from keras_tin.datasets.synthetic_motion import make_clips
        if height != width:
            raise SystemExit("--calibration synthetic needs square frames.")
        _log(f"making {count} synthetic motion clips ({frames}x{height}x{width}) for int8 "
             "calibration")
        clips, _ = make_clips(count, frames=frames, size=height)
        return clips  # uint8: cast to float32 one clip at a time
    if spec.endswith(".npy"):
        import numpy as np
        return np.load(spec, mmap_mode="r")
    if ":" in spec:
        from keras_tin.data import load_dataset
        name, root = spec.split(":", 1)
        # normalization=None: the model normalises 0-255 RGB itself.
        return load_dataset(name, root, split="train", frames=frames, training=False,
                            batch_size=1, image_size=height, normalization=None)
    raise SystemExit(f"--calibration: expected 'synthetic', a .npy file or DATASET:ROOT. "
                     f"Received: {spec!r}")


def _run_under_tensorflow(args, backend):
    """Re-runs this export in a subprocess with KERAS_BACKEND=tensorflow."""
    import importlib.util
    import json
    import subprocess

    if os.environ.get(SUBPROCESS_FLAG):
        raise SystemExit(f"keras-tin export: the Keras backend is still {backend!r} with "
                         "KERAS_BACKEND=tensorflow; check ~/.keras/keras.json.")
    if importlib.util.find_spec("tensorflow") is None:
        raise SystemExit("keras-tin export needs TensorFlow (exports trace TensorFlow graphs):"
                         " pip install tensorflow, then KERAS_BACKEND=tensorflow keras-tin "
                         "export ...")
    _log(f"keras-tin export: the Keras backend is {backend!r}, but exports trace TensorFlow "
         "graphs; re-running under KERAS_BACKEND=tensorflow (set it yourself to skip this).")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", **{SUBPROCESS_FLAG: "1"})
    command = [sys.executable, "-m", "keras_tin.commands.export", json.dumps(vars(args))]
    return subprocess.call(command, env=env)


def run(args):
    import keras

    _check_options(args)
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return _run_under_tensorflow(args, backend)

    from keras_tin import export
    from keras_tin.export.calibration import CalibrationRangeError
    from keras_tin.export.serving import clip_shape

    model = _load_model(args)
    class_names, labels_source = find_labels(args)
    if class_names is not None and len(class_names) != model.output_shape[-1]:
        raise SystemExit(f"Class count mismatch: {labels_source} has {len(class_names)} names "
                         f"but the model predicts {model.output_shape[-1]} classes; pass "
                         "--labels with the label list it was trained on.")
    if args.format == "saved_model":
        export.export_saved_model(model, args.output, input_dtype=args.input_dtype or "uint8",
                                  batch_size=args.batch_size, class_names=class_names)
        size = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(args.output) for f in files)
        print(f"SavedModel: {args.output} ({size / 2**20:.2f} MiB)")
        _print_labels(class_names, labels_source)
        return 0
    quantize = None if args.quantize in (None, "none") else args.quantize
    calibration = None
    if quantize == "int8":
        calibration = _calibration_clips(args, clip_shape(model))
    try:
        size = export.export_tflite(
            model, args.output, quantize=quantize, representative_dataset=calibration,
            batch_size=args.batch_size or 1, input_dtype=args.input_dtype or "float32",
            output_dtype=args.output_dtype or "float32",
            max_calibration_clips=args.calibration_clips or DEFAULT_CALIBRATION_CLIPS,
            class_names=class_names, verbose=True)
    except CalibrationRangeError as e:
        raise SystemExit(str(e)) from None
    print(f"TFLite ({args.quantize or 'none'}): {args.output} ({size / 2**20:.2f} MiB, "
          f"{size} bytes)")
    _print_labels(class_names, labels_source)
    try:
        ops = export.op_names(args.output)
    except ImportError as e:
        print(f"(op list unavailable: {e})")
    else:
        print("ops: " + ", ".join(ops))
    return 0


def _print_labels(class_names, source):
    if class_names is None:
        print("labels: none stored (pass --labels FILE_OR_NAME to store class names)")
    else:
        print(f"labels: {len(class_names)} class names from {source}, stored in the "
              "file's keras_tin metadata (keras_tin.export.read_metadata)")


if __name__ == "__main__":  # the TensorFlow-backend re-run of _run_under_tensorflow
    import argparse
    import json

    sys.exit(run(argparse.Namespace(**json.loads(sys.argv[1]))))
