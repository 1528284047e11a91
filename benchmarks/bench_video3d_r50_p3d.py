"""pytorchvideo's R(2+1)D-50 and the P3D ResNets: Keras forward latency vs the independent
PyTorch reference of the same network (weights/torch_reference_pytorchvideo.py,
torch_reference_p3d.py), and TFLite int8 vs float.

Batch 1, inference, random weights (latency does not depend on them):
- keras: the Keras model in a tf.function (graph mode, TensorFlow backend);
- torch: the PyTorch reference (eval, no_grad), same architecture and publisher's modules;
  both at the published input (R(2+1)D-50 16 x 224 x 224, P3D 16 x 160 x 160), interleaved
  round-robin, the median reported; MACs from the PyTorch reference (convs and fc).
- tflite: the model exported with keras_tin.export.export_tflite, float32 and int8 (post-
  training, 2 calibration clips), run with the LiteRT interpreter (default threads), at
  --tflite-size pixels (smaller than published by default: the conversions of the full-size
  networks take minutes on a small CPU).

    .venv/bin/python benchmarks/bench_video3d_r50_p3d.py [--repeats 3] [--models r2plus1d_r50,p3d63]
        [--tflite-size 112] [--no-tflite | --only-tflite]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights"))

import torch_reference_p3d as trp  # noqa: E402
import torch_reference_pytorchvideo as trv  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402

MODELS = {  # name: (frames, size, torch reference builder)
    "r2plus1d_r50": (16, 224, lambda: trv.R2Plus1D(50)),
    "p3d63": (16, 160, lambda: trp.P3D(63)),
    "p3d131": (16, 160, lambda: trp.P3D(131)),
    "p3d199": (16, 160, lambda: trp.P3D(199)),
}


def torch_macs(model, shape):
    total = [0]

    def hook(module, _, out):
        if isinstance(module, (torch.nn.Conv3d, torch.nn.Conv2d)):
            total[0] += out.numel() // out.shape[0] * module.weight[0].numel()
        elif isinstance(module, torch.nn.Linear):
            total[0] += out.numel() // out.shape[0] * module.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return total[0]


def time_call(fn, repeats):
    fn()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tflite_row(name, frames, size, repeats):
    from keras_tin.export import TFLiteModel
    from keras_tin.export import export_tflite

    model = build_for_architecture(name, frames=frames, input_shape=(frames, size, size, 3))
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 255, (1, frames, size, size, 3)).astype(np.float32)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (None, "int8"):
            path = os.path.join(tmp, f"{name}_{quantize}.tflite")
            kwargs = {}
            if quantize:
                kwargs = dict(quantize="int8", representative_dataset=rng.uniform(
                    0, 255, (2, frames, size, size, 3)).astype(np.float32))
            start = time.perf_counter()
            export_tflite(model, path, **kwargs)
            convert_s = time.perf_counter() - start
            runner = TFLiteModel(path)
            out[quantize or "float"] = (time_call(lambda: runner(clip), repeats), convert_s,
                                        os.path.getsize(path) / 2 ** 20)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="r2plus1d_r50,p3d63")
    parser.add_argument("--tflite-size", type=int, default=112)
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--only-tflite", action="store_true")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    print(f"TF {tf.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"batch 1, {args.repeats} repeats (median)")
    print(f"{'model':14s} {'input':>12s} {'GMACs':>7s} {'params':>9s} {'keras s':>8s} "
          f"{'torch s':>8s} {'keras/torch':>11s}")
    for name in [] if args.only_tflite else names:
        frames, size, ref_builder = MODELS[name]
        ref = ref_builder().eval()
        model = build_for_architecture(name, frames=frames, input_shape=(frames, size, size, 3))
        clip = np.random.default_rng(1).uniform(0, 255, (1, frames, size, size, 3)).astype(
            np.float32)
        graph = tf.function(lambda x: model(x, training=False))
        x_tf = tf.constant(clip)
        x_torch = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3)))
        keras_times, torch_times = [], []
        graph(x_tf)
        with torch.no_grad():
            ref(x_torch)
        for _ in range(args.repeats):  # interleaved round-robin
            start = time.perf_counter()
            graph(x_tf).numpy()
            keras_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                ref(x_torch)
            torch_times.append(time.perf_counter() - start)
        k, t = statistics.median(keras_times), statistics.median(torch_times)
        macs = torch_macs(ref, (1, 3, frames, size, size)) / 1e9
        params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        print(f"{name:14s} {f'{frames}x{size}x{size}':>12s} {macs:7.2f} {params:9d} "
              f"{k:8.3f} {t:8.3f} {k / t:11.2f}", flush=True)
    if args.no_tflite:
        return
    print(f"\nTFLite at {args.tflite_size} px (batch 1; latency s / conversion s / file MiB)")
    for name in names:
        frames = MODELS[name][0]
        rows = tflite_row(name, frames, args.tflite_size, args.repeats)
        f, q = rows["float"], rows["int8"]
        print(f"{name:14s} float {f[0]:.3f} s / {f[1]:.0f} s / {f[2]:.1f} MiB   int8 {q[0]:.3f} s"
              f" / {q[1]:.0f} s / {q[2]:.1f} MiB   int8/float {q[0] / f[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
