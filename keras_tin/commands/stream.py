"""`keras-tin stream VIDEO_OR_CAMERA_INDEX --weights ...`: online recognition frame by frame.

Each frame (BGR from OpenCV, turned to RGB) is resized so that its short side is 256/224 of
the model's input size and centre-cropped to it (the online demo's Scale(256) +
CenterCrop(224)), then fed to the step model of an online TSM network
(keras_tin.streaming), which carries its state from frame to frame. Printed per frame: the
frame number, the frame rate achieved so far (decode + preprocessing + model), and the
running top-k (softmax of the logits averaged over the last --window frames; with
--smoothing mit, the label of MIT's online demo smoothing first). --output writes the
video with the predictions drawn on it (mp4v).
"""

import os
import sys
import time


def add_arguments(parser):
    parser.description = __doc__.split("\n\n", 1)[0]
    parser.add_argument("source", help="a video file, or a camera index (0, 1, ...)")
    parser.add_argument("--weights", required=True,
                        help="an online model: a .keras file (TSMMobileNetV2(online=True), "
                             "trained with --online, or its step model), an exported step "
                             ".tflite file, or a pretrained name such as "
                             "tsm_online_mobilenetv2_jester_mit")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept a pretrained checkpoint without a published hash")
    parser.add_argument("--labels", default=None,
                        help="class names file or packaged label set (default: labels.txt "
                             "beside the model, or the pretrained checkpoint's labels)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--window", type=int, default=1,
                        help="average the logits of the last N frames (default 1; MIT's "
                             "demo uses 12)")
    parser.add_argument("--smoothing", choices=("none", "mit"), default="none",
                        help="mit: the online demo's label smoothing (27 Jester classes)")
    parser.add_argument("--stride", type=int, default=1,
                        help="process every N-th frame (MIT's demo: 2)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="stop after this many frames read")
    parser.add_argument("--output", default=None, help="write an annotated video (.mp4)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--export-tflite", default=None, metavar="PATH",
                        help="first write the step model of the --weights .keras model as a "
                             "TFLite file (state as <= 4-D inputs/outputs, batch 1), then "
                             "stream with that file")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none",
                        help="with --export-tflite: int8 calibrated on the first "
                             "--calibration-frames frames of the source, stepped in order")
    parser.add_argument("--calibration-frames", type=int, default=32)


class _Runner:
    """model.step(frame RGB float (H, W, 3)) -> logits; .size: (H, W)."""

    def __init__(self, spec, allow_unverified=False):
        from keras_tin.streaming.step_model import StreamingModel

        self.pretrained = None
        if str(spec).endswith(".tflite"):
            from keras_tin.streaming.tflite import TFLiteStepModel

            self.model = TFLiteStepModel(spec)
            self.size = tuple(int(v) for v in self.model.frame_shape[1:3])
            return
        if os.path.exists(spec):
            if not str(spec).endswith(".keras"):
                raise ValueError(f"--weights must be a .keras or .tflite file or a pretrained "
                                 f"name. Received: {spec!r}")
            import keras

            model = keras.saving.load_model(spec)
        else:
            from keras_tin.applications.records import pretrained
            from keras_tin.weights import registry

            if not registry.is_pretrained_name(spec):
                raise FileNotFoundError(f"--weights: no such file or pretrained name: {spec!r}")
            model = pretrained(spec, allow_unverified=allow_unverified)
            self.pretrained = spec
        self.model = StreamingModel(model)
        shape = self.model.step_model.inputs[0].shape
        self.size = (int(shape[1]), int(shape[2]))

    def step(self, frame):
        return self.model.step(frame)


def open_source(source):
    import cv2

    if str(source).isdigit():
        capture = cv2.VideoCapture(int(source))
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"video not found: {source!r}")
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"cannot open the video or camera {source!r}")
    return capture


def preprocess(frame_bgr, size):
    """BGR uint8 (h, w, 3) -> RGB float32 (H, W, 3): short side to 256/224 of the input,
    centre crop (the online demo's GroupScale(256) + GroupCenterCrop(224))."""
    import cv2
    import numpy as np

    height, width = size
    h, w = frame_bgr.shape[:2]
    scale = max(height, width) * 256 / 224 / min(h, w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    crop = resized[top:top + height, left:left + width]
    return np.ascontiguousarray(crop[:, :, ::-1], dtype=np.float32)


def _softmax(x):
    import numpy as np

    e = np.exp(x - x.max())
    return e / e.sum()


def _draw(frame, lines):
    import cv2

    y = 20
    for text in lines:
        cv2.putText(frame, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(frame, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        y += 18
    return frame


def _export(args):
    """--export-tflite: the step model of --weights, written as TFLite."""
    from keras_tin.streaming.tflite import export_step_tflite

    if str(args.weights).endswith(".tflite"):
        raise ValueError("--export-tflite needs a Keras model or pretrained name as --weights, "
                         f"not a .tflite file. Received: {args.weights!r}")
    step_model = _Runner(args.weights, args.allow_unverified).model.step_model
    calibration = None
    if args.quantize == "int8":
        size = tuple(int(v) for v in step_model.inputs[0].shape[1:3])
        capture = open_source(args.source)
        calibration = []
        while len(calibration) < args.calibration_frames:
            ok, frame = capture.read()
            if not ok:
                break
            calibration.append(preprocess(frame, size))
        capture.release()
        if not calibration:
            raise ValueError(f"no frame to calibrate on could be read from {args.source!r}")
    nbytes = export_step_tflite(step_model, args.export_tflite,
                                None if args.quantize == "none" else "int8", calibration)
    print(f"Wrote {args.export_tflite} ({args.quantize if args.quantize != 'none' else 'float32'}"
          f" step model, {nbytes / 1e6:.2f} MB)", flush=True)


def run(args):
    import cv2
    import numpy as np

    from keras_tin.streaming.smoothing import LogitAverager
    from keras_tin.streaming.smoothing import MITDemoSmoother
    from keras_tin.training.prediction import find_labels

    for name in ("top_k", "window", "stride"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1. "
                             f"Received: {getattr(args, name)}")
    if args.export_tflite:
        _export(args)
        weights = args.export_tflite
    else:
        if args.quantize != "none":
            raise ValueError("--quantize applies to --export-tflite only.")
        weights = args.weights
    runner = _Runner(weights, args.allow_unverified)
    capture = open_source(args.source)
    first_logits = None
    names = None
    averager = LogitAverager(args.window)
    smoother = MITDemoSmoother() if args.smoothing == "mit" else None
    writer = None
    read = processed = 0
    start = time.perf_counter()
    lines = []
    try:
        while args.max_frames is None or read < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            read += 1
            if (read - 1) % args.stride == 0:
                logits = runner.step(preprocess(frame, runner.size))
                processed += 1
                if first_logits is None:
                    first_logits = logits
                    from keras_tin.weights import registry
                    pretrained = (args.weights if registry.is_pretrained_name(args.weights)
                                  else None)
                    labels_from = None if pretrained else args.weights
                    names = find_labels(labels_from, args.labels, logits.shape[-1],
                                        pretrained=pretrained)
                    if smoother is not None and logits.shape[-1] != 27:
                        raise ValueError("--smoothing mit is the online demo's rule for the 27 "
                                         f"Jester classes; the model has {logits.shape[-1]}.")
                index, mean = averager.update(logits)
                probs = _softmax(mean)
                top = np.argsort(-probs)[:args.top_k]
                name = (lambda i: names[i] if names else str(i))
                fps = processed / (time.perf_counter() - start)
                shown = "  ".join(f"{name(i)} {probs[i]:.2f}" for i in top)
                head = f"frame {read}  {fps:.1f} fps"
                lines = [head]
                if smoother is not None:
                    label = name(smoother.update(logits))
                    lines.append(f"prediction: {label}")
                    shown = f"[{label}]  " + shown
                lines += [f"{name(i)} {probs[i]:.2f}" for i in top]
                if not args.quiet:
                    print(f"{head}  {shown}", flush=True)
            if args.output:
                if writer is None:
                    fps_out = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*"mp4v"),
                                             fps_out if fps_out > 0 else 25.0, (w, h))
                    if not writer.isOpened():
                        raise ValueError(f"cannot write the video {args.output!r}")
                writer.write(_draw(frame, lines))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if processed == 0:
        print(f"keras-tin stream: error: no frame could be read from {args.source!r}",
              file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(f"{processed} frames processed ({read} read) in {elapsed:.2f} s: "
          f"{processed / elapsed:.1f} fps" + (f"; annotated video: {args.output}"
                                              if args.output else ""))
    return 0
