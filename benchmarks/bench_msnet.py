"""MSNet-ResNet-50 (MotionSqueeze) vs TSM-ResNet-50: forward latency in Keras against their
MAC ratio (keras_tin.utils.flops), and MSNet-R50 in Keras vs the independent PyTorch
reference (weights/torch_reference_msnet.py, whose correlation is 225 explicit shifted sums).

    .venv/bin/python benchmarks/bench_msnet.py [--size 224] [--batch 1] [--frames 8] \
        [--runs 5]

Inference, one clip of `frames` frames, median of `runs` rounds (each round times one call
of every model, so load changes on a shared machine hit all alike) after a warm-up, a
tf.function-compiled Keras forward (model(x, training=False) inside tf.function, no XLA).
The correlation uses implementation="auto" (the compiled op where it is loaded) and, for
comparison, "portable".
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "weights"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import tensorflow as tf
    import torch

    import torch_reference_msnet as trm
    from keras_tin.applications import MSNetResNet50
    from keras_tin.applications import TSMResNet50
    from keras_tin.ops import dispatch
    from keras_tin.utils.flops import flops

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (args.frames, args.size, args.size, 3)
    x = np.random.RandomState(0).uniform(0, 255, (args.batch,) + shape).astype(np.float32)
    print(f"input {args.batch} x {shape}, {args.runs} runs (median), TF "
          f"{tf.__version__}, torch {torch.__version__}, CPU threads: TF default, torch "
          f"{torch.get_num_threads()}; correlation op loaded: "
          f"{dispatch._correlation_status()[0]}")
    entries = []  # (label, GMACs or None, trainable params, forward callable)
    xt = tf.constant(x)
    for label, build, kwargs in (("TSM-R50", TSMResNet50, {}),
                                 ("MSNet-R50 (auto)", MSNetResNet50, {}),
                                 ("MSNet-R50 (portable)", MSNetResNet50,
                                  {"implementation": "portable"})):
        model = build(frames=args.frames, input_shape=shape, classes=174, **kwargs)
        forward = tf.function(lambda t, m=model: m(t, training=False))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        entries.append((label, flops(model) / 1e9, trainable,
                        lambda f=forward: f(xt).numpy()))
    ref = trm.Release(50, args.frames, 174).eval()
    x_torch = torch.from_numpy(np.ascontiguousarray(
        x.reshape((-1,) + shape[1:]).transpose(0, 3, 1, 2)))

    def torch_forward():
        with torch.no_grad():
            ref(x_torch)

    entries.append(("MSNet-R50 PyTorch ref", None, trm.trainable_parameters(ref),
                    torch_forward))
    # Round-robin timing (one call of each model per round) so that load changes on a
    # shared machine hit every model alike.
    for entry in entries:
        entry[3]()  # warm-up (tracing)
    times = [[] for _ in entries]
    for _ in range(args.runs):
        for i, entry in enumerate(entries):
            start = time.perf_counter()
            entry[3]()
            times[i].append(time.perf_counter() - start)
    rows = [(label, gmacs, params, float(np.median(t)))
            for (label, gmacs, params, _), t in zip(entries, times)]
    base_macs, base_s = rows[0][1], rows[0][3]
    print("\nparams: trainable (the PyTorch reference also holds the authors' unused "
          "BatchNorm2d(128): +256)")
    print("\n| model | GMACs / clip | params | latency s (median) | MAC ratio vs TSM | "
          "latency ratio vs TSM |")
    print("|---|---|---|---|---|---|")
    for label, gmacs, params, seconds in rows:
        mac = f"{gmacs:.3f}" if gmacs is not None else "-"
        ratio = f"{gmacs / base_macs:.4f}" if gmacs is not None else "-"
        print(f"| {label} | {mac} | {params:,} | {seconds:.3f} | {ratio} | "
              f"{seconds / base_s:.3f} |")


if __name__ == "__main__":
    main()
