"""`keras-tin export`: a model to SavedModel or TFLite; prints the file size and TFLite ops."""

import os

CONSTRUCTORS = ("TINResNet18", "TINResNet34", "TINResNet50", "TINResNet101",
                "TSMResNet18", "TSMResNet34", "TSMResNet50", "TSMResNet101",
                "TSNResNet18", "TSNResNet34", "TSNResNet50", "TSNResNet101",
                "TINMobileNetV2", "TSMMobileNetV2", "TSNMobileNetV2")


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help=f"a .keras file, or a constructor: {', '.join(CONSTRUCTORS)}")
    parser.add_argument("--weights", default=None,
                        help="with a constructor: pretrained name or local weights file")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--size", type=int, default=224, help="frame size (default 224)")
    parser.add_argument("--classes", type=int, default=400, help="classes (default 400)")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="tflite")
    parser.add_argument("--quantize", choices=("none", "float16", "dynamic", "int8"),
                        default="none", help="TFLite quantization (default none: float32)")
    parser.add_argument("--input-dtype", choices=("uint8", "float32"), default=None,
                        help="clip dtype (default: uint8 for SavedModel, float32 for TFLite)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="static batch (default: dynamic for SavedModel, 1 for TFLite)")
    parser.add_argument("--calibration", default=None,
                        help="int8 calibration clips: 'synthetic' (synthetic motion clips), "
                             "a .npy file of clips (N, frames, H, W, 3), or "
                             "DATASET:ROOT for keras_tin.data.load_dataset (e.g. "
                             "something-v2:/data/sthv2)")
    parser.add_argument("--calibration-clips", type=int, default=100,
                        help="clips used for int8 calibration (default 100)")
    parser.add_argument("--output", "-o", required=True, help="output file or directory")


def _load_model(args):
    import keras

    if args.model.endswith(".keras") or os.path.isfile(args.model):
        import keras_tin  # noqa: F401  (registers the layers for deserialization)
        return keras.saving.load_model(args.model, compile=False)
    if args.model not in CONSTRUCTORS:
        raise SystemExit(f"--model must be a .keras file or one of {CONSTRUCTORS}. "
                         f"Received: --model={args.model!r}")
    from keras_tin import applications
    build = getattr(applications, args.model)
    return build(frames=args.frames, input_shape=(args.frames, args.size, args.size, 3),
                 classes=args.classes, weights=args.weights)


def _calibration_clips(args, clip_shape):
    spec = args.calibration
    frames, height, width, _ = clip_shape
    if spec is None:
        raise SystemExit("--quantize int8 needs --calibration (clips to calibrate on).")
    if spec == "synthetic":
        from keras_tin.datasets.synthetic_motion import make_clips
        if height != width:
            raise SystemExit("--calibration synthetic needs square frames.")
        clips, _ = make_clips(args.calibration_clips, frames=frames, size=height)
        return clips.astype("float32")
    if spec.endswith(".npy"):
        import numpy as np
        return np.load(spec).astype("float32")
    if ":" in spec:
        from keras_tin.data import load_dataset
        name, root = spec.split(":", 1)
        # normalization=None: the model normalises 0-255 RGB itself.
        return load_dataset(name, root, split="train", frames=frames, training=False,
                            batch_size=1, image_size=height, normalization=None)
    raise SystemExit(f"--calibration: expected 'synthetic', a .npy file or DATASET:ROOT. "
                     f"Received: {spec!r}")


def run(args):
    from keras_tin import export
    from keras_tin.export.serving import clip_shape

    model = _load_model(args)
    if args.format == "saved_model":
        export.export_saved_model(model, args.output, input_dtype=args.input_dtype or "uint8",
                                  batch_size=args.batch_size)
        size = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(args.output) for f in files)
        print(f"SavedModel: {args.output} ({size / 2**20:.2f} MiB)")
        return 0
    quantize = None if args.quantize == "none" else args.quantize
    calibration = None
    if quantize == "int8":
        calibration = _calibration_clips(args, clip_shape(model))
    size = export.export_tflite(model, args.output, quantize=quantize,
                                representative_dataset=calibration,
                                batch_size=args.batch_size or 1,
                                input_dtype=args.input_dtype or "float32",
                                max_calibration_clips=args.calibration_clips)
    print(f"TFLite ({args.quantize}): {args.output} ({size / 2**20:.2f} MiB, {size} bytes)")
    try:
        ops = export.op_names(args.output)
    except ImportError as e:
        print(f"(op list unavailable: {e})")
    else:
        print("ops: " + ", ".join(ops))
    return 0
