"""Keras float vs TFLite float vs TFLite int8 (LiteRT, XNNPACK): latency per clip and size.

Side by side in one run, for TIN-ResNet-50 and TIN-MobileNetV2 at 8 x 224 x 224:
    python benchmarks/bench_export.py [--size 224] [--repeats 5] [--threads 2]
Random weights (latency and size do not depend on them); int8 is calibrated on a few
synthetic motion clips. Prints a markdown table and the issue's target ratios.
"""

import argparse
import faulthandler
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def median_latency(fn, x, repeats):
    fn(x)  # warm-up (graph tracing / XNNPACK packing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_model(name, model, clip, calibration, repeats, threads, workdir):
    import tensorflow as tf

    from keras_tin.export import export_tflite
    from keras_tin.ops.dispatch import export_graph

    # Convert everything first; every LiteRT run happens in a child process (below).
    files = {}
    for quantize in (None, "int8"):
        path = os.path.join(workdir, f"{name}_{quantize or 'float'}.tflite")
        start = time.perf_counter()
        files[f"tflite {quantize or 'float32'}"] = (
            path, export_tflite(model, path, quantize=quantize,
                                representative_dataset=calibration))
        print(f"  {name} {quantize or 'float32'}: converted in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    with export_graph():  # the same graph the exports hold
        keras_fn = tf.function(lambda c: model(c, training=False), jit_compile=False)
        keras_s = median_latency(lambda c: keras_fn(c).numpy(), clip, repeats)
    rows = {"keras float32": (keras_s, model.count_params() * 4)}
    clip_file = os.path.join(workdir, "clip.npy")
    np.save(clip_file, clip)
    for label, (path, size) in files.items():
        rows[label] = (litert_latency(path, clip_file, repeats, threads), size)
    return rows


# LiteRT runs in its own process, which never imports TensorFlow, as on a device (and
# TF's thread pools do not compete with XNNPACK's). The "double free" abort seen here
# was the int8 TIN-R50 file, not the float one: a calibration range of [0, 0] gave an
# int8 FULLY_CONNECTED a requantization scale XNNPACK rejects; export_tflite now widens
# such ranges (keras_tin/export/tflite.py, widen_degenerate_ranges).
LITERT_TIMER = """
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, clip_file, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
clip = np.load(clip_file).astype(inp["dtype"])
times = []
for i in range(repeats + 1):
    start = time.perf_counter()
    it.set_tensor(inp["index"], clip)
    it.invoke()
    it.get_tensor(out["index"])
    times.append(time.perf_counter() - start)
print(float(np.median(times[1:])))
"""


def litert_latency(path, clip_file, repeats, threads):
    result = subprocess.run([sys.executable, "-c", LITERT_TIMER, path, clip_file, str(repeats),
                             str(threads)], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-clips", type=int, default=4)
    args = parser.parse_args()
    faulthandler.enable()

    import keras
    import tensorflow as tf

    from keras_tin import applications
    from keras_tin.datasets.synthetic_motion import make_clips

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    shape = (args.frames, args.size, args.size, 3)
    calibration, _ = make_clips(args.calibration_clips, args.frames, args.size, seed=1)
    calibration = calibration.astype(np.float32)
    clip = calibration[:1]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, constructor in (("TIN-R50", applications.TINResNet50),
                                  ("TIN-MobileNetV2", applications.TINMobileNetV2)):
            model = constructor(frames=args.frames, input_shape=shape, classes=400)
            results[name] = bench_model(name, model, clip, calibration, args.repeats,
                                        args.threads, workdir)
    print(f"\n{args.frames} x {args.size} x {args.size} clip, batch 1, {args.threads} threads, "
          f"median of {args.repeats}\n")
    print("| model | runtime | ms / clip | size (MiB) |")
    print("|---|---|---:|---:|")
    for name, rows in results.items():
        for label, (seconds, size) in rows.items():
            print(f"| {name} | {label} | {seconds * 1e3:.0f} | {size / 2**20:.1f} |")
    print()
    for name, rows in results.items():
        f_s, f_b = rows["tflite float32"]
        q_s, q_b = rows["tflite int8"]
        print(f"{name}: int8/float file {q_b / f_b:.4f} ({q_b} / {f_b} bytes; target <= 0.3), "
              f"int8/float TFLite latency {q_s / f_s:.2f} (target <= 0.6)")
    speedup = results["TIN-R50"]["keras float32"][0] / results["TIN-MobileNetV2"]["tflite int8"][0]
    print(f"TIN-MobileNetV2 int8 vs Keras TIN-R50: {speedup:.1f}x faster (target >= 10x)")


if __name__ == "__main__":
    main()
