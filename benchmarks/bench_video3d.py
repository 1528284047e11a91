"""The 3D / (2+1)D video CNNs on this CPU: Keras vs the PyTorch model of the same network,
and TFLite int8 vs float, measured in one run.

For each model, batch 1, inference:
- keras: the Keras model in a tf.function (graph mode, TensorFlow backend);
- torch: the PyTorch model (eval, no_grad): torchvision's own r2plus1d_18 / r3d_18 / mc3_18,
  the independent references of weights/torch_reference_video3d.py for R(2+1)D-34;
- tflite float / int8 (with --tflite): keras_tin.export.export_tflite, int8 calibrated on
  4 random clips, run by keras_tin.export.TFLiteModel (LiteRT, default threads).
Everything of a model runs interleaved, round-robin; medians are reported with
keras / torch (target <= 1.0: no slower than PyTorch at batch 1) and int8 / float (file size
and latency).

    .venv/bin/python benchmarks/bench_video3d.py [--frames 16] [--size 112] [--repeats 5]
        [--models r2plus1d_18,r3d_18,mc3_18,r2plus1d_34,r2plus1d_34_vmz] [--tflite]
        [--quick]   # 8 frames, 3 repeats, the three torchvision models only

Adding a model is a line in MODELS: name -> (keras architecture, kwargs, a function
returning the PyTorch module of the same network with random weights).
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

from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402


def torchvision_model(name):
    def build(classes):
        original = torch.library.register_fake  # torchvision's compiled ops do not register
        torch.library.register_fake = lambda *a, **k: (lambda fn: fn)  # with this CPU torch
        try:
            from torchvision.models.video import resnet
        finally:
            torch.library.register_fake = original
        return getattr(resnet, name)(num_classes=classes)
    return build


def reference_model(cls_name):
    def build(classes):
        import torch_reference_video3d as reference
        return getattr(reference, cls_name)(classes=classes)
    return build


def module_builder(module, cls_name, **kwargs):
    def build(classes):
        import importlib
        return getattr(importlib.import_module(module), cls_name)(classes=classes, **kwargs)
    return build


MODELS = {  # name: (keras architecture, keras kwargs, PyTorch module builder(classes))
    "r2plus1d_18": ("r2plus1d_18", {}, torchvision_model("r2plus1d_18")),
    "r3d_18": ("r3d_18", {}, torchvision_model("r3d_18")),
    "mc3_18": ("mc3_18", {}, torchvision_model("mc3_18")),
    "r2plus1d_34": ("r2plus1d_34", {}, reference_model("MMAction2R2Plus1D34")),
    "r2plus1d_34_vmz": ("r2plus1d_34_vmz", {}, reference_model("VMZR2Plus1D34")),
    # pytorchvideo's R(2+1)D-50 (16 x 224: its head pool needs 16 frames) and P3D (>= 16
    # frames, 160 px), against the references in their publishers' module names.
    "r2plus1d_r50": ("r2plus1d_r50", {},
                     module_builder("torch_reference_pytorchvideo", "R2Plus1D", depth=50)),
    "p3d63": ("p3d63", {}, module_builder("torch_reference_p3d", "P3D", depth=63)),
    "p3d199": ("p3d199", {}, module_builder("torch_reference_p3d", "P3D", depth=199)),
}


def round_robin(fns, repeats):
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (tracing, first-run allocation)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def tflite_runners(model, clip, folder):
    from keras_tin.export import TFLiteModel
    from keras_tin.export import export_tflite

    flat = os.path.join(folder, f"{model.name}.tflite")
    int8 = os.path.join(folder, f"{model.name}_int8.tflite")
    export_tflite(model, flat)
    rng = np.random.default_rng(1)
    calibration = rng.uniform(0, 255, (4,) + clip.shape[1:]).astype("float32")
    export_tflite(model, int8, quantize="int8", representative_dataset=calibration)
    sizes = {"float": os.path.getsize(flat), "int8": os.path.getsize(int8)}
    runners = {kind: TFLiteModel(path) for kind, path in (("float", flat), ("int8", int8))}
    return {kind: (lambda r=r: r(clip)) for kind, r in runners.items()}, sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=None,
                        help="default: the model's published size (112; mmaction2 224)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tflite", action="store_true", help="also TFLite float vs int8")
    parser.add_argument("--quick", action="store_true",
                        help="8 frames, 3 repeats, the torchvision models")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.repeats = 8, 3
        if args.models == ",".join(MODELS):
            args.models = "r2plus1d_18,r3d_18,mc3_18"
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {sorted(MODELS)}")
    print(f"TF {tf.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"batch 1 x {args.frames} frames; {args.repeats} repeats, medians")
    rows = []
    folder = tempfile.mkdtemp(prefix="bench_video3d_")
    for name in names:
        arch, kwargs, torch_builder = MODELS[name]
        keras_model = build_for_architecture(arch, frames=args.frames, classes=400,
                                             normalization=None, **kwargs)
        size = args.size or keras_model.input_shape[2]
        if size != keras_model.input_shape[2]:
            keras_model = build_for_architecture(arch, frames=args.frames, classes=400,
                                                 normalization=None,
                                                 input_shape=(size, size, 3), **kwargs)
        rng = np.random.default_rng(0)
        clip = rng.normal(size=(1, args.frames, size, size, 3)).astype("float32")
        x = tf.constant(clip)
        fn = tf.function(lambda x, m=keras_model: m(x, training=False))
        net = torch_builder(400).eval()
        clip_t = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3)))

        def run_torch(net=net):
            with torch.no_grad():
                return net(clip_t).numpy()

        fns = {"keras": lambda: fn(x).numpy(), "torch": run_torch}
        sizes = {}
        if args.tflite:
            runners, sizes = tflite_runners(keras_model, clip, folder)
            fns.update(runners)
        medians = round_robin(fns, args.repeats)
        rows.append((name, size, flops(keras_model), medians, sizes))
        del keras_model, net
    print("\n| model | input | GMACs | keras s | torch s | keras / torch |"
          + (" tflite float s | tflite int8 s | int8 / float latency | float MB | int8 MB |"
             " int8 / float size |" if args.tflite else ""))
    print("|---|---|---|---|---|---|" + ("---|" * 6 if args.tflite else ""))
    for name, size, macs, m, sizes in rows:
        line = (f"| {name} | {args.frames}x{size}x{size} | {macs / 1e9:.2f} | {m['keras']:.3f} | "
                f"{m['torch']:.3f} | {m['keras'] / m['torch']:.2f} |")
        if args.tflite:
            line += (f" {m['float']:.3f} | {m['int8']:.3f} | {m['int8'] / m['float']:.2f} | "
                     f"{sizes['float'] / 1e6:.1f} | {sizes['int8'] / 1e6:.1f} | "
                     f"{sizes['int8'] / sizes['float']:.2f} |")
        print(line)


if __name__ == "__main__":
    main()
