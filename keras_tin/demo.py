"""The demo: TIN vs TSM vs TSN on synthetic clips whose label is in the frame order."""

import json
import os
import time

import keras
import numpy as np

from keras_tin.applications import TemporalResNet
from keras_tin.datasets import synthetic_motion
from keras_tin.utils.interlace_stats import interlace_stats
from keras_tin.utils.interlace_stats import plot_interlace_stats


def direction_accuracy(probs, labels):
    """Within the true pair, is the right direction ranked above its reverse?

    A frame-averaging model sees identical evidence for both, so it sits at 0.5.
    """
    labels = np.asarray(labels)
    forward = probs[np.arange(len(labels)), labels - labels % 2]
    backward = probs[np.arange(len(labels)), labels - labels % 2 + 1]
    predicted = (backward > forward).astype(int)
    return float(np.mean(predicted == labels % 2))


def evaluate(model, clips, labels, batch_size):
    probs = model.predict(clips, batch_size=batch_size, verbose=0)
    predictions = probs.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "pair_accuracy": float(np.mean(predictions // 2 == labels // 2)),
        "direction_accuracy": direction_accuracy(probs, labels),
    }


def demo_depth(temporal, depth):
    """`depth`, or the smallest depth the temporal module is defined for when it is not
    defined at `depth` (TEA sits in Res2Net-50 blocks; STM in bottlenecks)."""
    from keras_tin.applications import temporal_modules

    depths = temporal_modules.get(temporal).depths
    return depth if not depths or depth in depths else min(depths)


DISPLAY_NAMES = {"tada2d": "TAda2D", "msnet": "MSNet"}


def display_name(temporal):
    return DISPLAY_NAMES.get(temporal, temporal.upper())


def model_title(temporal, depth):
    from keras_tin.applications import temporal_modules
    from keras_tin.applications.temporal_resnet import block_kind_for

    backbone = ("Res2Net" if block_kind_for(temporal_modules.get(temporal), depth) == "res2net"
                else "ResNet")
    return f"{display_name(temporal)}-{backbone}-{depth}"


def build_demo_model(temporal, frames, depth, size, seed, width=16):
    keras.utils.set_random_seed(seed)
    depth = demo_depth(temporal, depth)
    model = TemporalResNet(temporal, depth, frames=frames, input_shape=(frames, size, size, 3),
                           classes=len(synthetic_motion.CLASS_NAMES), dropout_rate=0.2,
                           base_filters=width,
                           name=model_title(temporal, depth).lower().replace("-", "") + "_demo")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run_demo(frames=8, depth=18, size=32, epochs=4, num_train=1200, num_val=400,
             batch_size=16, models=("tin", "tsm", "tsn"), output_dir="demo_output", seed=0,
             width=16, verbose=1):
    """Trains each model with model.fit and returns {model: metrics}; writes a table,
    results.json and TIN's learned offsets/weights plot into output_dir."""
    os.makedirs(output_dir, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    say(f"Models: ResNet-{depth} of base width {width} (the standard ResNet has 64).")
    say(f"Synthetic motion clips: {num_train} train / {num_val} val, {frames} frames of "
        f"{size}x{size}, {len(synthetic_motion.CLASS_NAMES)} classes in 4 direction pairs.")
    (x_train, y_train), (x_val, y_val) = synthetic_motion.load_data(
        num_train, num_val, frames, size, seed)
    results = {}
    for temporal in models:
        say(f"\n== {model_title(temporal, demo_depth(temporal, depth))} ==")
        model = build_demo_model(temporal, frames, depth, size, seed, width)
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                  validation_data=(x_val, y_val), verbose=verbose)
        metrics = evaluate(model, x_val, y_val, batch_size)
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        results[temporal] = metrics
        if temporal == "tin":
            stats = interlace_stats(model, x_val[:64])
            path = os.path.join(output_dir, "tin_offsets_weights.png")
            plot_interlace_stats(stats, path, title=f"TIN-ResNet-{depth} on synthetic motion: "
                                                    "offsets and weights per layer")
            results["tin"]["plot"] = path
        if temporal == "msnet":  # MotionSqueeze's flow and confidence on one clip
            from keras_tin.utils.motion_maps import motion_maps
            from keras_tin.utils.motion_maps import plot_motion_maps

            path = os.path.join(output_dir, "msnet_motion_maps.png")
            label = synthetic_motion.CLASS_NAMES[int(y_val[0])]
            plot_motion_maps(x_val[0], motion_maps(model, x_val[0]), path,
                             title=f"MSNet on a validation clip ({label}): flow and "
                                   "confidence per frame pair")
            results["msnet"]["plot"] = path
    table = format_table(results)
    say("\n" + table)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    if "plot" in results.get("tin", {}):
        say(f"TIN's learned offsets and weights: {results['tin']['plot']}")
    if "plot" in results.get("msnet", {}):
        say(f"MSNet's flow and confidence maps: {results['msnet']['plot']}")
    return results


def format_table(results):
    lines = ["| model | val accuracy (8 classes) | motion pair | direction within pair "
             "(chance 0.50) | train s |", "|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {display_name(name)} | {m['accuracy']:.3f} | {m['pair_accuracy']:.3f} | "
                     f"{m['direction_accuracy']:.3f} | {m['train_seconds']} |")
    return "\n".join(lines)
