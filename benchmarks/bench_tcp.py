"""TCPResNet50 (TSN-R50 with Temporal-attentive Covariance Pooling, layer4 stride 1) against
TSN-R50: Keras forward latency vs the FLOPs ratio, and Keras vs the independent PyTorch
reference of each network (weights/torch_reference.py, weights/torch_reference_tcp.py), all
measured in one run, interleaved round-robin, median per runtime reported.

Batch 1 (or --batch) x 8 frames x --size px, inference: keras = the model in a tf.function
(TensorFlow backend, graph mode); torch = the reference in eval mode under no_grad. MACs
from keras_tin.utils.flops (convs, dense layers, TCP's attention, temporal conv and
covariance; the 3-step Newton-Schulz iteration, 6 matmuls of 128 x 128 per clip = 12.6 M
MACs, is left out). Both frameworks use their default CPU thread pools.

Two Keras-only rows split TCP-R50's cost: its backbone alone (TSN-R50 with layer4 at stride
1, up to layer4's output) and the TCP head alone on (8, 14, 14, 2048) features.

    .venv/bin/python benchmarks/bench_tcp.py [--size 224] [--repeats 5] [--batch 1]
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import keras
import tensorflow as tf
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights"))

import torch_reference as tr  # noqa: E402
import torch_reference_tcp as trt  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.layers import tcp  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402

MODELS = {"tsn": ("tsn_resnet50", "TSN-R50"), "tcp": ("tcp_resnet50", "TCP-R50 (TCPNet)")}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames, size, batch, classes = args.frames, args.size, args.batch, 400
    print(f"TF {tf.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"batch {batch} x {frames} frames x {size} px")
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 255, (batch, frames, size, size, 3)).astype("float32")
    normalised = np.ascontiguousarray(((clip - 114.0) / 57.0).transpose(0, 1, 4, 2, 3))
    inputs = {"tsn": torch.from_numpy(normalised.reshape(-1, 3, size, size)),
              "tcp": torch.from_numpy(normalised)}
    refs = {"tsn": tr.Recognizer("tsn", 50, frames, classes), "tcp": trt.TCPNet(classes, 50, frames)}
    x = tf.constant(clip)
    fns, macs, models = {}, {}, {}
    for name, (arch, _) in MODELS.items():
        model = models[name] = build_for_architecture(arch, frames=frames, classes=classes,
                                                      input_shape=(frames, size, size, 3))
        macs[name] = flops(model)
        fn = tf.function(lambda x, m=model: m(x, training=False))
        fns[(name, "keras")] = lambda fn=fn: fn(x).numpy()
        ref = refs[name].eval()

        def run_torch(ref=ref, inp=inputs[name]):
            with torch.no_grad():
                return ref(inp).numpy()

        fns[(name, "torch")] = run_torch
    tcp_model = models["tcp"]
    backbone = keras.Model(tcp_model.inputs, tcp_model.get_layer("layer4_2_out").output)
    macs["backbone"] = flops(backbone)
    backbone_fn = tf.function(lambda x: backbone(x, training=False))
    fns[("backbone", "keras")] = lambda: backbone_fn(x).numpy()
    feature_shape = tuple(backbone.output.shape[1:])
    head_in = keras.Input(feature_shape)
    head = keras.Model(head_in, tcp.tcp_head(frames)(head_in))
    head_fn = tf.function(lambda f: head(f, training=False))
    feats = tf.constant(rng.normal(size=(batch * frames,) + feature_shape).astype("float32"))
    fns[("head", "keras")] = lambda: head_fn(feats).numpy()
    macs["head"] = macs["tcp"] - macs["backbone"] - 8256 * classes * frames  # minus fc
    medians = round_robin(fns, args.repeats)
    base = medians[("tsn", "keras")]
    print("\n| model | MACs per clip (G) | keras s | torch s | keras / torch | keras / TSN-R50 "
          "| MACs / TSN-R50 | latency ratio / MACs ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, title) in MODELS.items():
        k, t = medians[(name, "keras")], medians[(name, "torch")]
        ratio = macs[name] / macs["tsn"]
        print(f"| {title} | {macs[name] / 1e9:.2f} | {k:.3f} | {t:.3f} | {k / t:.2f} | "
              f"{k / base:.3f} | {ratio:.3f} | {(k / base) / ratio:.3f} |")
    for name, title in (("backbone", "TCP-R50's backbone alone (layer4 stride 1)"),
                        ("head", "TCP head alone")):
        k, ratio = medians[(name, "keras")], macs[name] / macs["tsn"]
        print(f"| {title} | {macs[name] / 1e9:.2f} | {k:.3f} | - | - | {k / base:.3f} | "
              f"{ratio:.3f} | {(k / base) / ratio:.3f} |")


if __name__ == "__main__":
    main()
