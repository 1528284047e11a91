"""Online TSM MobileNetV2 step model: per-frame latency of the Keras step, TFLite float and
TFLite int8 (LiteRT, XNNPACK), with file sizes.

    python benchmarks/bench_streaming.py [--size 224] [--frames 50] [--threads 2]

Random weights with 27 classes (the Jester online model's head; latency and size do not
depend on the weights). int8 is calibrated on synthetic motion frames stepped in order, so
the state tensors see realistic values. Each latency is the median per-frame time of
stepping --frames frames with the state carried (after 5 warm-up frames). Prints a
markdown table and the int8/float ratio.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def per_frame(step, frames):
    for frame in frames[:5]:
        step(frame)
    times = []
    for frame in frames:
        start = time.perf_counter()
        step(frame)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import keras

    from keras_tin.applications.mobilenet_v2 import TSMMobileNetV2
    from keras_tin.datasets import synthetic_motion
    from keras_tin.streaming import StreamingModel
    from keras_tin.streaming import build_step_model
    from keras_tin.streaming.tflite import TFLiteStepModel
    from keras_tin.streaming.tflite import export_step_tflite

    keras.utils.set_random_seed(0)
    model = TSMMobileNetV2(frames=8, input_shape=(8, args.size, args.size, 3), classes=27,
                           online=True)
    step_model = build_step_model(model)
    clips, _ = synthetic_motion.make_clips(3, frames=8, size=args.size, seed=0)
    calibration = [f.astype("float32") for clip in clips for f in clip]
    rng = np.random.default_rng(0)
    frames = [f.astype("float32") for f in
              rng.uniform(0, 255, (args.frames, args.size, args.size, 3))]
    rows = []
    keras_stream = StreamingModel(step_model)
    rows.append(("Keras step (TF, tf.function)", per_frame(keras_stream.step, frames), None))
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (None, "int8"):
            path = os.path.join(tmp, f"step_{quantize or 'float'}.tflite")
            start = time.perf_counter()
            size = export_step_tflite(step_model, path, quantize, calibration)
            print(f"converted {quantize or 'float32'} in {time.perf_counter() - start:.0f} s",
                  flush=True)
            runner = TFLiteStepModel(path, num_threads=args.threads)
            rows.append((f"TFLite {quantize or 'float32'} step (XNNPACK, {args.threads} threads)",
                         per_frame(runner.step, frames), size))
    print(f"\nOnline TSM MobileNetV2 step, {args.size} px, 27 classes, batch 1, "
          f"{len(step_model.inputs) - 1} state tensors (<= 4-D)\n")
    print("| model | ms per frame | frames/s | file MB |")
    print("|---|---|---|---|")
    for name, ms, size in rows:
        mb = "" if size is None else f"{size / 1e6:.2f}"
        print(f"| {name} | {ms:.2f} | {1e3 / ms:.0f} | {mb} |")
    print(f"\nint8 / float32 TFLite latency ratio: {rows[2][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
