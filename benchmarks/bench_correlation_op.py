"""MotionSqueeze's correlation: custom op vs portable graph vs portable XLA, side by side.

Shape: MSNet-R50's correlation input (ZOO_SPEC.md section 1: after res3's reduction to 64
channels at 28 x 28 for 224 px frames, d = 7, 15 x 15 = 225 displacements) for a batch
of --clips 8-frame clips, i.e. B = clips x 7 frame pairs. Forward and forward+backward
(gradients w.r.t. both inputs for a fixed upstream gradient) each run in ONE
tf.function; the cases are timed in interleaved rounds (op, graph, XLA, op, ...) so that
machine noise hits all alike, and the median round is reported. Ratios are portable
time / op time.

    python benchmarks/bench_correlation_op.py [--clips 2] [--rounds 7] [--iters 5]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_tin.ops import custom_op  # noqa: E402
from keras_tin.ops.local_correlation import correlation_portable  # noqa: E402

PAIRS = 7  # 8 frames -> 7 consecutive pairs
SIZE, CHANNELS, MAX_DISP = 28, 64, 7


def make_case(batch, backward, impl, rng, dtype=tf.float32):
    f1 = tf.constant(rng.normal(size=(batch, SIZE, SIZE, CHANNELS)), dtype)
    f2 = tf.constant(rng.normal(size=(batch, SIZE, SIZE, CHANNELS)), dtype)
    up = tf.constant(rng.normal(size=(batch, SIZE, SIZE, (2 * MAX_DISP + 1) ** 2)), dtype)
    fn = custom_op.correlation if impl == "op" else correlation_portable

    def forward(a, b):
        return fn(a, b, MAX_DISP)

    def forward_backward(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = fn(a, b, MAX_DISP)
        return tape.gradient(y, [a, b], output_gradients=up)

    compiled = tf.function(forward_backward if backward else forward,
                           jit_compile=(impl == "xla"))
    compiled(f1, f2)  # trace / compile outside the timing
    return lambda: compiled(f1, f2)


def _sync(result):
    for t in tf.nest.flatten(result):
        t.numpy()


def time_rounds(cases, rounds, iters):
    """{name: (median wall seconds, median CPU seconds of this process, all threads)}."""
    wall = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(iters):
                out = run()
            _sync(out)
            wall[name].append((time.perf_counter() - start) / iters)
            cpu[name].append((time.process_time() - start_cpu) / iters)
    return {name: (float(np.median(wall[name])), float(np.median(cpu[name])))
            for name in cases}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args(argv)
    assert custom_op.load() is not None and custom_op.has_correlation(), \
        custom_op.failure_reason()
    batch = args.clips * PAIRS
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs visible; f1, f2 = "
          f"({batch}, {SIZE}, {SIZE}, {CHANNELS}) float32, d = {MAX_DISP} "
          f"({args.clips} clips x {PAIRS} pairs); median of {args.rounds} rounds x "
          f"{args.iters} calls")
    rng = np.random.default_rng(0)
    print("wall = elapsed time per call; cpu = CPU time of this process per call (all "
          "threads: robust to other jobs on a shared machine)")
    print(f"{'pass':<18}{'clock':<6}{'op ms':>9}{'graph ms':>10}{'XLA ms':>9}{'graph/op':>10}"
          f"{'XLA/op':>9}")
    for backward in (False, True):
        cases = {impl: make_case(batch, backward, impl, rng) for impl in ("op", "graph", "xla")}
        times = time_rounds(cases, args.rounds, args.iters)
        label = "forward+backward" if backward else "forward"
        for i, clock in enumerate(("wall", "cpu")):
            t = {name: v[i] for name, v in times.items()}
            print(f"{label:<18}{clock:<6}{t['op'] * 1e3:>9.2f}{t['graph'] * 1e3:>10.2f}"
                  f"{t['xla'] * 1e3:>9.2f}{t['graph'] / t['op']:>10.2f}"
                  f"{t['xla'] / t['op']:>9.2f}")


if __name__ == "__main__":
    main()
