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


def make_case(shapes, delta, backward, impl, rng):
    """A callable running the interlace on every (size, channels) block in ONE tf.function
    (as inside a model: one dispatch, so per-call overhead does not blur the ratios)."""
    xs = [tf.constant(rng.normal(size=(FRAMES, s, s, c)).astype(np.float32)) for s, c in shapes]
    offs = [tf.constant(rng.uniform(-2, 2, size=(1, 4)).astype(np.float32)) for _ in shapes]
    wts = [tf.constant(rng.uniform(0, 2, size=(1, FRAMES, 4)).astype(np.float32))
           for _ in shapes]
    ups = [tf.constant(rng.normal(size=(FRAMES, s, s, c // 4 if delta else c))
                       .astype(np.float32)) for s, c in shapes]
    if impl == "op":
        fn = custom_op.interlace_delta if delta else custom_op.interlace
    else:
        fn = portable.interlace_delta if delta else portable.interlace

    def forward(xs, offs, wts):
        return [fn(x, o, w, FRAMES) for x, o, w in zip(xs, offs, wts)]

    def forward_backward(xs, offs, wts):
        with tf.GradientTape() as tape:
            tape.watch([xs, offs, wts])
            ys = forward(xs, offs, wts)
        return tape.gradient(ys, [xs, offs, wts], output_gradients=ups)

    body = forward_backward if backward else forward
    compiled = tf.function(body, jit_compile=(impl == "xla"))
    compiled(xs, offs, wts)  # trace / compile outside the timing

    def run():
        out = compiled(xs, offs, wts)  # returns when every output is computed
        del out

    return run


def _median_ms(run_by_impl, rounds):
    times = {impl: [] for impl in run_by_impl}
    for _ in range(rounds):
        for impl, run in run_by_impl.items():  # interleaved: noise hits all alike
            start = time.perf_counter()
            run()
            times[impl].append(time.perf_counter() - start)
    return {impl: 1e3 * float(np.median(v)) for impl, v in times.items()}


def bench_interlace(rounds):
    rng = np.random.default_rng(0)
    impls = ("op", "graph", "xla")
    blocks = [shape for shape, count in BLOCK_SHAPES for _ in range(count)]  # the 16 blocks
    print(f"TIN interlace, all 16 ResNet-50 blocks (8 frames, 224 px) in one tf.function, "
          f"median of {rounds} interleaved rounds, ms")
    print(f"{'mode':<8} {'pass':<9} {'op':>8} {'graph':>8} {'xla':>8} {'graph/op':>9} "
          f"{'xla/op':>7}")
    cases = [(delta, backward) for delta in (True, False) for backward in (False, True)]
    for delta, backward in cases:
        med = _median_ms({impl: make_case(blocks, delta, backward, impl, rng)
                          for impl in impls}, rounds)
        print(f"{'delta' if delta else 'full':<8} {'fwd+bwd' if backward else 'fwd':<9} "
              f"{med['op']:8.1f} {med['graph']:8.1f} {med['xla']:8.1f} "
              f"{med['graph'] / med['op']:9.2f} {med['xla'] / med['op']:7.2f}")
    print("\nper block shape, one tf.function per shape (ratio portable / op; < 1: op slower):")
    print(f"{'mode':<8} {'pass':<9} {'shape':<18} {'op ms':>7} {'graph/op':>9} {'xla/op':>7}")
    for delta, backward in cases:
        for (s, c), _ in BLOCK_SHAPES:
            med = _median_ms({impl: make_case([(s, c)], delta, backward, impl, rng)
                              for impl in impls}, rounds)
            print(f"{'delta' if delta else 'full':<8} {'fwd+bwd' if backward else 'fwd':<9} "
                  f"{f'(8,{s},{s},{c})':<18} {med['op']:7.2f} {med['graph'] / med['op']:9.2f} "
                  f"{med['xla'] / med['op']:7.2f}")


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
