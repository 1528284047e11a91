"""What one TIN block adds, part by part, at each distinct TIN block of TIN-R50.

Each part runs alone in its own tf.function, timed from Python (median of --repeats
calls, minus the median of an empty tf.function call on the same input):
  descriptor          TinChannelMean (or the portable slice+mean)
  offsets_and_weights the descriptor plus OffsetNet and WeightNet
  delta               all of the module: offsets_and_weights plus the interlace delta
  conv_F              the fused form's extra conv: the F-channel delta -> conv1 filters
  conv1               the block's first 1x1 conv itself (what TSN runs), for scale
and, per clip, the sum over the 16 blocks (shapes read from the model) next to the TSN-R50
forward of one clip, as a ratio. Parts timed alone are not the same as parts inside the
model, where TF runs independent ops side by side; read this as where the time can go.

    .venv/bin/python benchmarks/bench_tin_block_parts.py [--repeats 100]
"""

import argparse
import collections
import statistics
import time

import tensorflow as tf
from keras import ops

from keras_tin.applications import TemporalResNet
from keras_tin.layers import TemporalConv2D
from keras_tin.layers import TemporalInterlace
from keras_tin.ops import dispatch

FRAMES = 8
PARTS = ("descriptor", "offsets_and_weights", "delta", "conv_F", "conv1")


def median_ms(fn, x, repeats):
    fn(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def block_parts(shape, filters, repeats):
    x = tf.random.normal(shape)
    module = TemporalInterlace(FRAMES)
    module.build(shape)
    f = shape[-1] // 4
    kernel = tf.random.normal((1, 1, shape[-1], filters))
    x_f = tf.random.normal(shape[:-1] + (f,))  # the delta: already F channels, no slice
    fns = {
        "empty": tf.function(lambda x: x[0, 0, 0, 0] + x_f[0, 0, 0, 0]),
        "descriptor": tf.function(lambda x: dispatch.descriptor_fn("auto")(x, f)),
        "offsets_and_weights": tf.function(lambda x: module.offsets_and_weights(x)[0]),
        "delta": tf.function(module.delta),
        "conv_F": tf.function(lambda x: ops.conv(x_f, kernel[:, :, :f])),
        "conv1": tf.function(lambda x: ops.conv(x, kernel)),
    }
    times = {name: median_ms(fn, x, repeats) for name, fn in fns.items()}
    return {name: max(times[name] - times["empty"], 0.0) for name in PARTS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()

    model = TemporalResNet(depth=50, frames=FRAMES, input_shape=(FRAMES, 224, 224, 3),
                           classes=400, temporal="tsn")
    forward = tf.function(lambda c: model(c, training=False))
    clip = tf.random.uniform((1, FRAMES, 224, 224, 3), 0, 255)
    tsn_ms = median_ms(forward, clip, max(5, args.repeats // 20))
    tin = TemporalResNet(depth=50, frames=FRAMES, input_shape=(FRAMES, 224, 224, 3),
                         classes=400, temporal="tin")
    blocks = collections.Counter(
        ((FRAMES,) + tuple(layer.input.shape[1:]), layer.filters)
        for layer in tin._flatten_layers(include_self=False)
        if isinstance(layer, TemporalConv2D) and layer.temporal_module is not None)
    assert sum(blocks.values()) == 16, blocks

    print(f"ms per block call (one {FRAMES}-frame clip), median of {args.repeats}")
    print("| block input | conv1 filters | blocks | " + " | ".join(PARTS) + " |")
    print("|---|---:|---:|" + "---:|" * len(PARTS))
    totals = dict.fromkeys(PARTS, 0.0)
    for (shape, filters), count in blocks.items():
        parts = block_parts(shape, filters, args.repeats)
        for name in PARTS:
            totals[name] += count * parts[name]
        print(f"| {shape} | {filters} | {count} | "
              + " | ".join(f"{parts[n]:.2f}" for n in PARTS) + " |")
    print(f"\nTSN-R50 forward, 1 clip: {tsn_ms:.1f} ms")
    for name in PARTS:
        print(f"  16 blocks, {name:20s} {totals[name]:7.1f} ms = {totals[name] / tsn_ms:.3f} "
              "of TSN")


if __name__ == "__main__":
    main()
