"""TIN-R50 vs TSN-R50 (and TSM-R50) latency, measured side by side in one run.

Forward latency per 8-frame 224 px clip batch in a tf.function (graph mode), and a
training step (forward + backward + SGD update) via train_on_batch. Models run
interleaved, round-robin, and the median per model is reported with its ratio to
TSN. Targets (issue 2): TIN/TSN forward <= 1.05, training step <= 1.10.

    .venv/bin/python benchmarks/bench_resnet50.py [--repeats 5] [--batch-sizes 1,8]
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

from keras_tin.applications import TemporalResNet
from keras_tin.ops import dispatch

VARIANTS = {
    "TSN-R50": dict(temporal="tsn"),
    "TSM-R50": dict(temporal="tsm"),
    "TIN-R50 (auto)": dict(temporal="tin", implementation="auto"),
    "TIN-R50 (auto, unfused)": dict(temporal="tin", implementation="auto", fuse=False),
    "TIN-R50 (portable, fused)": dict(temporal="tin", implementation="portable"),
    "TIN-R50 (portable, unfused)": dict(temporal="tin", implementation="portable", fuse=False),
}


def build(variant, frames, size):
    return TemporalResNet(depth=50, frames=frames, input_shape=(frames, size, size, 3),
                          classes=400, **VARIANTS[variant])


def round_robin(fns, repeats):
    times = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up (tracing, first-run allocation)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title, medians, unit_count, unit):
    base = medians["TSN-R50"]
    print(f"\n{title}")
    print(f"| model | median s | {unit}/s | ratio to TSN |")
    print("|---|---|---|---|")
    for name, t in medians.items():
        print(f"| {name} | {t:.3f} | {unit_count / t:.1f} | {t / base:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default=";".join(VARIANTS),
                        help="semicolon-separated subset of the variant names")
    args = parser.parse_args()
    names = [v for v in args.variants.split(";") if v]
    print(f"custom op: {dispatch.custom_op_status()}; TF {tf.__version__}; "
          f"threads: inter={tf.config.threading.get_inter_op_parallelism_threads()} "
          f"intra={tf.config.threading.get_intra_op_parallelism_threads()}")
    models = {name: build(name, args.frames, args.size) for name in names}
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        clips = tf.constant(rng.uniform(0, 255, (batch, args.frames, args.size, args.size, 3)),
                            tf.float32)
        fns = {}
        for name, model in models.items():
            fn = tf.function(lambda x, m=model: m(x, training=False))
            fns[name] = lambda fn=fn: fn(clips).numpy()
        medians = round_robin(fns, args.repeats)
        report(f"Forward, batch {batch} x {args.frames} frames x {args.size} px",
               medians, batch, "clips")
    clips = rng.uniform(0, 255, (args.train_batch, args.frames, args.size, args.size, 3))
    labels = np.arange(args.train_batch) % 400
    fns = {}
    for name, model in models.items():
        model.compile("sgd", "sparse_categorical_crossentropy")
        fns[name] = lambda m=model: m.train_on_batch(clips, labels)
    medians = round_robin(fns, args.repeats)
    report(f"Training step (train_on_batch), batch {args.train_batch} x {args.frames} frames",
           medians, args.train_batch, "clips")


if __name__ == "__main__":
    main()
