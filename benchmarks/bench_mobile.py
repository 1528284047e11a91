"""Mobile video models as int8 TFLite: latency per clip, file size and MACs, one table.

    python benchmarks/bench_mobile.py            # each model's native clip, 224 px
    python benchmarks/bench_mobile.py --quick    # 112 px, fewer repeats: a short run

Rows (MODELS below; add one to extend the table, e.g. a per-frame streaming step):
- SqueezeTime (keras_tin.applications.SqueezeTime) at its native 16 frames: the released
  models take 16 x 224 x 224 clips (time folded into 48 input channels);
- TSM-MobileNetV2 and TIN-MobileNetV2 at their native 8 frames (8 x 224 x 224).
Random weights (latency, size and MACs do not depend on them), 400 classes; int8 is
full-integer (keras_tin.export.export_tflite(quantize="int8")), calibrated on a few
synthetic motion clips; float32 input (the file quantizes it). Latency: LiteRT
Interpreter (XNNPACK, applied by default) in a child process without TensorFlow, batch 1,
median of --repeats after a warm-up. MACs: keras_tin.utils.flops (per clip, one view).
Accuracy: as published, from the manifest record named in the row (not measured here).
"""

import argparse
import faulthandler
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from bench_export import litert_latency  # noqa: E402  (LiteRT timed in a child process)


def _squeezetime(frames, size):
    from keras_tin.applications import SqueezeTime
    return SqueezeTime(frames=frames, input_shape=(frames, size, size, 3), classes=400)


def _mobilenet(temporal):
    def build(frames, size):
        from keras_tin.applications import TemporalMobileNetV2
        return TemporalMobileNetV2(temporal, frames=frames, input_shape=(frames, size, size, 3),
                                   classes=400)
    return build


# name, builder(frames, size) -> keras model, native frames, unit of the latency column,
# manifest record whose published accuracy is quoted (None: no published checkpoint).
MODELS = [
    dict(name="SqueezeTime", build=_squeezetime, frames=16, unit="clip",
         record="squeezetime_16f_kinetics400"),
    dict(name="TSM-MobileNetV2", build=_mobilenet("tsm"), frames=8, unit="clip",
         record="tsm_mobilenetv2_8f_kinetics400_mit"),
    dict(name="TIN-MobileNetV2", build=_mobilenet("tin"), frames=8, unit="clip", record=None),
]


def published(record_name):
    if record_name is None:
        return "no published checkpoint"
    from keras_tin.weights import registry
    record = registry.get_record(record_name)
    return (f"K400 top-1 {record['top1']} ({record['frames']} f, `{record_name}`; "
            f"{record['protocol'].split(' (')[0].split(';')[0]})")


def bench(entry, size, calibration_clips, repeats, threads, workdir):
    import keras

    from keras_tin.datasets.synthetic_motion import make_clips
    from keras_tin.export import export_tflite
    from keras_tin.utils.flops import flops

    keras.utils.set_random_seed(0)
    frames = entry["frames"]
    model = entry["build"](frames, size)
    macs = flops(model)
    calibration, _ = make_clips(calibration_clips, frames, size, seed=1)
    calibration = calibration.astype(np.float32)
    path = os.path.join(workdir, f"{entry['name']}_int8.tflite")
    start = time.perf_counter()
    nbytes = export_tflite(model, path, quantize="int8", representative_dataset=calibration)
    print(f"  {entry['name']}: int8 converted in {time.perf_counter() - start:.0f} s",
          flush=True)
    clip_file = os.path.join(workdir, f"{entry['name']}_clip.npy")
    np.save(clip_file, calibration[:1])
    seconds = litert_latency(path, clip_file, repeats, threads)
    return dict(clip=f"{frames} x {size} x {size}", macs=macs, bytes=nbytes, seconds=seconds,
                params=sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="112 px, 2 calibration clips, 3 repeats (a short run)")
    parser.add_argument("--size", type=int, default=None, help="pixels (default 224)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    parser.add_argument("--calibration-clips", type=int, default=None, help="default 4")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of: " + ", ".join(m["name"] for m in MODELS))
    args = parser.parse_args(argv)
    size = args.size or (112 if args.quick else 224)
    repeats = args.repeats or (3 if args.quick else 5)
    calibration_clips = args.calibration_clips or (2 if args.quick else 4)
    chosen = MODELS
    if args.models:
        wanted = [m.strip() for m in args.models.split(",")]
        unknown = [m for m in wanted if m not in {e["name"] for e in MODELS}]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {[e['name'] for e in MODELS]}")
        chosen = [e for e in MODELS if e["name"] in wanted]
    faulthandler.enable()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for entry in chosen:
            rows.append((entry, bench(entry, size, calibration_clips, repeats, args.threads,
                                      workdir)))
    print(f"\nint8 TFLite (LiteRT + XNNPACK), batch 1, {args.threads} threads, median of "
          f"{repeats}, {size} px, {os.cpu_count()} CPUs visible\n")
    print("| model | clip (T x H x W) | params | MACs / clip | int8 file | int8 latency | "
          "accuracy as published |")
    print("|---|---|---:|---:|---:|---:|---|")
    for entry, r in rows:
        print(f"| {entry['name']} | {r['clip']} | {r['params'] / 1e6:.2f} M | "
              f"{r['macs'] / 1e9:.2f} G | {r['bytes'] / 2**20:.1f} MiB | "
              f"{r['seconds'] * 1e3:.0f} ms / {entry['unit']} | {published(entry['record'])} |")


if __name__ == "__main__":
    main()
