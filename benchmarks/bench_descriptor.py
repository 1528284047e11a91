"""TIN descriptor (mean over H, W of the first C/4 channels): custom op vs TensorFlow.

At the input shapes of the 16 TIN blocks of ResNet-50 (8 frames, 224 px), side by side
in one run, interleaved, median of --rounds:

    .venv/bin/python benchmarks/bench_descriptor.py [--rounds 15]
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

from keras_tin.ops import custom_op

# (shape, how many of the 16 blocks have it)
SHAPES = [((8, 56, 56, 64), 1), ((8, 56, 56, 256), 3), ((8, 28, 28, 512), 4),
          ((8, 14, 14, 1024), 6), ((8, 7, 7, 2048), 2)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if custom_op.load() is None:
        raise SystemExit(f"custom op unavailable: {custom_op.failure_reason()}")
    rng = np.random.default_rng(0)
    print("| block input | blocks | op ms | slice+mean ms | slice+mean / op |")
    print("|---|---|---|---|---|")
    total = {"op": 0.0, "tf": 0.0}
    for shape, count in SHAPES:
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        f = shape[-1] // 4
        fns = {"op": tf.function(lambda: custom_op.channel_mean(x, f)),
               "tf": tf.function(lambda: tf.reduce_mean(x[..., :f], axis=(1, 2)))}
        np.testing.assert_allclose(fns["op"]().numpy(), fns["tf"]().numpy(), atol=1e-5)
        times = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                start = time.perf_counter()
                fn().numpy()
                times[k].append(time.perf_counter() - start)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for k in med:
            total[k] += med[k] * count
        print(f"| {shape} | {count} | {med['op']:.2f} | {med['tf']:.2f} | "
              f"{med['tf'] / med['op']:.2f} |")
    print(f"| all 16 blocks | 16 | {total['op']:.1f} | {total['tf']:.1f} | "
          f"{total['tf'] / total['op']:.2f} |")


if __name__ == "__main__":
    main()
