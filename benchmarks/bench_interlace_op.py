"""The TIN interlace: custom op vs portable graph vs portable XLA, side by side.

Shapes: the inputs of the 16 bottlenecks of ResNet-50 (every one holds a TIN module)
for one clip of 8 frames at 224 px. Times are summed over the 16 blocks; each case is
timed in interleaved rounds (op, graph, XLA, op, ...) so that machine noise hits all
three alike; the median round is reported. Ratios are portable time / op time.

    python benchmarks/bench_interlace_op.py [--rounds 7] [--end-to-end]

--end-to-end also times a whole TIN-R50 forward pass (8 x 224 px): the op inside a
tf.function vs the portable path with the whole model XLA-compiled.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_tin.ops import custom_op, portable  # noqa: E402

FRAMES = 8

# (H, C) of each bottleneck's input, and how many of the 16 blocks have it:
# stage 1: 64 then 2 x 256 at 56 px; stage 2: 256 at 56 (stride in its 3x3), 3 x 512
# at 28; stage 3: 512 at 28, 5 x 1024 at 14; stage 4: 1024 at 14, 2 x 2048 at 7.
BLOCK_SHAPES = [((56, 64), 1), ((56, 256), 3), ((28, 512), 4), ((14, 1024), 6),
                ((7, 2048), 2)]
assert sum(count for _, count in BLOCK_SHAPES) == 16


def make_case(size, channels, delta, backward, impl, rng):
    x = tf.constant(rng.normal(size=(FRAMES, size, size, channels)).astype(np.float32))
    offsets = tf.constant(rng.uniform(-2, 2, size=(1, 4)).astype(np.float32))
    weights = tf.constant(rng.uniform(0, 2, size=(1, FRAMES, 4)).astype(np.float32))
    if impl == "op":
        fn = custom_op.interlace_delta if delta else custom_op.interlace
    else:
        fn = portable.interlace_delta if delta else portable.interlace
    out_c = channels // 4 if delta else channels
    upstream = tf.constant(rng.normal(size=(FRAMES, size, size, out_c)).astype(np.float32))

    def forward(x, offsets, weights):
        return fn(x, offsets, weights, FRAMES)

    def forward_backward(x, offsets, weights):
        with tf.GradientTape() as tape:
            tape.watch([x, offsets, weights])
            y = fn(x, offsets, weights, FRAMES)
        return tape.gradient(y, [x, offsets, weights], output_gradients=upstream)

    body = forward_backward if backward else forward
    compiled = tf.function(body, jit_compile=(impl == "xla"))
    compiled(x, offsets, weights)  # trace / compile outside the timing

    def run():
        out = compiled(x, offsets, weights)
        # Fetch a tiny slice so asynchronous execution has finished.
        first = out[0] if isinstance(out, (list, tuple)) else out
        _ = first[0, 0, 0, 0].numpy()

    return run


def bench_interlace(rounds):
    rng = np.random.default_rng(0)
    impls = ("op", "graph", "xla")
    print(f"TIN interlace over the 16 ResNet-50 blocks (8 frames, 224 px), median of "
          f"{rounds} interleaved rounds, ms")
    header = f"{'mode':<8} {'pass':<9} {'op':>8} {'graph':>8} {'xla':>8} " \
             f"{'graph/op':>9} {'xla/op':>7}"
    print(header)
    per_shape = []
    for delta in (True, False):
        for backward in (False, True):
            runs = {impl: [(make_case(s, c, delta, backward, impl, rng), count)
                           for (s, c), count in BLOCK_SHAPES] for impl in impls}
            totals = {impl: [] for impl in impls}
            shape_times = {impl: [[] for _ in BLOCK_SHAPES] for impl in impls}
            for _ in range(rounds):
                for impl in impls:
                    total = 0.0
                    for i, (run, count) in enumerate(runs[impl]):
                        start = time.perf_counter()
                        run()
                        elapsed = time.perf_counter() - start
                        shape_times[impl][i].append(elapsed)
                        total += elapsed * count
                    totals[impl].append(total)
            med = {impl: 1e3 * float(np.median(totals[impl])) for impl in impls}
            mode = "delta" if delta else "full"
            pas = "fwd+bwd" if backward else "fwd"
            print(f"{mode:<8} {pas:<9} {med['op']:8.1f} {med['graph']:8.1f} {med['xla']:8.1f} "
                  f"{med['graph'] / med['op']:9.2f} {med['xla'] / med['op']:7.2f}")
            for i, ((s, c), _) in enumerate(BLOCK_SHAPES):
                m = {impl: float(np.median(shape_times[impl][i])) for impl in impls}
                per_shape.append((mode, pas, s, c, m["graph"] / m["op"], m["xla"] / m["op"]))
    print("\nper block shape (ratio portable / op; < 1 means the op is slower):")
    print(f"{'mode':<8} {'pass':<9} {'shape':<18} {'graph/op':>9} {'xla/op':>7}")
    for mode, pas, s, c, rg, rx in per_shape:
        print(f"{mode:<8} {pas:<9} {f'(8,{s},{s},{c})':<18} {rg:9.2f} {rx:7.2f}")


def bench_end_to_end(rounds):
    import keras

    from keras_tin.applications.temporal_resnet import TemporalResNet

    rng = np.random.default_rng(1)
    clip = tf.constant(rng.normal(size=(1, FRAMES, 224, 224, 3)).astype(np.float32))
    models = {}
    for temporal in ("tin", "tsn"):
        keras.utils.set_random_seed(0)
        models[temporal] = TemporalResNet(temporal=temporal, depth=50, frames=FRAMES,
                                          weights=None, classes=400,
                                          classifier_activation=None, implementation="auto")
    tin, tsn = models["tin"], models["tsn"]
    fns = {
        "TIN, op (tf.function)": tf.function(lambda v: tin(v, training=False)),
        "TIN, portable XLA": tf.function(lambda v: tin(v, training=False), jit_compile=True),
        "TSN, tf.function": tf.function(lambda v: tsn(v, training=False)),
    }
    outs = {name: fn(clip).numpy() for name, fn in fns.items()}  # trace + compile
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(clip).numpy()
            times[name].append(time.perf_counter() - start)
    a, b = outs["TIN, op (tf.function)"], outs["TIN, portable XLA"]
    print(f"\nTIN-R50 / TSN-R50 forward, 1 clip x 8 frames x 224 px, median of {rounds} rounds "
          f"(TIN logits: max |op - xla| = {np.abs(a - b).max():.2e}, max |logit| = "
          f"{np.abs(a).max():.2e}):")
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    for name, value in med.items():
        print(f"  {name:<22} {value:8.1f} ms")
    op, xla, tsn_ms = (med[k] for k in fns)
    print(f"  TIN xla / TIN op = {xla / op:.2f};  TIN op / TSN = {op / tsn_ms:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--end-to-end", action="store_true")
    args = parser.parse_args()
    if custom_op.load() is None:
        raise SystemExit(f"custom op unavailable: {custom_op.failure_reason()}")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores visible")
    bench_interlace(args.rounds)
    if args.end_to_end:
        bench_end_to_end(args.rounds)


if __name__ == "__main__":
    main()
