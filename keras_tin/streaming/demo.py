"""`keras-tin demo --online`: an online TSM MobileNetV2 trained with model.fit on the
synthetic motion clips, then run frame by frame through its step model.

The label of a synthetic clip is a motion pair and its direction (forward or backward in
time, keras_tin.datasets.synthetic_motion). A single frame carries no direction, so the
running prediction at frame 1 is at chance on direction (0.5); the causal shift lets the
step model accumulate evidence from the frames it has seen. Reported per frame t: the
accuracy, the motion-pair accuracy and the direction accuracy of the running prediction
(argmax of the mean step logits of frames 1..t), next to the same numbers for an offline
TSN MobileNetV2 (no temporal module) trained the same way.
"""

import json
import os
import time

import keras
import numpy as np

from keras_tin.datasets import synthetic_motion


def _build(online, frames, size, alpha, seed):
    from keras_tin.applications.mobilenet_v2 import TemporalMobileNetV2

    keras.utils.set_random_seed(seed)
    model = TemporalMobileNetV2("tsm" if online else "tsn", frames=frames,
                                input_shape=(frames, size, size, 3),
                                classes=len(synthetic_motion.CLASS_NAMES), dropout_rate=0.2,
                                alpha=alpha, online=online,
                                name="tsm_online_demo" if online else "tsn_demo")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def running_metrics(frame_logits, labels):
    """frame_logits (clips, frames, classes) -> per frame t: accuracy, pair accuracy and
    direction accuracy of argmax(mean of the logits of frames 1..t)."""
    labels = np.asarray(labels)
    running = np.cumsum(frame_logits, axis=1) / np.arange(1, frame_logits.shape[1] + 1)[:, None]
    out = []
    for t in range(frame_logits.shape[1]):
        scores = running[:, t]
        pred = scores.argmax(axis=1)
        base = labels - labels % 2
        rows = np.arange(len(labels))
        direction = (scores[rows, base + 1] > scores[rows, base]).astype(int)
        out.append({"frame": t + 1, "accuracy": float(np.mean(pred == labels)),
                    "pair_accuracy": float(np.mean(pred // 2 == labels // 2)),
                    "direction_accuracy": float(np.mean(direction == labels % 2))})
    return out


def step_frame_logits(step_model, clips):
    """Runs a step model (built with batch_size=None) over the clips frame by frame, all
    clips at once: (clips, frames, classes)."""
    from keras_tin.streaming.step_model import initial_state
    from keras_tin.streaming.step_model import step

    clips = np.asarray(clips, "float32")
    state = initial_state(step_model, batch_size=len(clips))
    out = []
    for t in range(clips.shape[1]):
        logits, state = step(step_model, clips[:, t], state)
        out.append(logits)
    return np.stack(out, axis=1)


def run_online_demo(frames=8, size=32, epochs=6, num_train=1200, num_val=200, batch_size=16,
                    alpha=0.5, output_dir="demo_output", seed=0, verbose=1):
    """Trains online TSM and TSN MobileNetV2 and returns {"tsm_online": [...], "tsn": [...]}
    (running_metrics per frame; the online one measured through the step model)."""
    from keras_tin.streaming.step_model import build_step_model
    from keras_tin.streaming.step_model import offline_frame_logits

    os.makedirs(output_dir, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    (x_train, y_train), (x_val, y_val) = synthetic_motion.load_data(
        num_train, num_val, frames, size, seed)
    say(f"Synthetic motion clips: {num_train} train / {num_val} val, {frames} frames of "
        f"{size}x{size}; MobileNetV2 width {alpha}.")
    results = {}
    for online in (True, False):
        key = "tsm_online" if online else "tsn"
        say(f"\n== {'online TSM' if online else 'TSN'} MobileNetV2 ==")
        model = _build(online, frames, size, alpha, seed)
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
        seconds = round(time.perf_counter() - start, 1)
        if online:
            step_model = build_step_model(model, batch_size=None)
            logits = step_frame_logits(step_model, x_val)
            offline = offline_frame_logits(model, x_val)
            say(f"step model vs offline per-frame logits: max |diff| "
                f"{np.abs(logits - offline).max():.2e}")
        else:
            logits = offline_frame_logits(model, x_val)
        results[key] = {"per_frame": running_metrics(logits, y_val), "train_seconds": seconds}
    table = format_table(results)
    say("\n" + table)
    with open(os.path.join(output_dir, "online_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output_dir, "online_results.md"), "w") as f:
        f.write(table + "\n")
    return results


def format_table(results):
    frames = len(results["tsm_online"]["per_frame"])
    lines = ["Running prediction after frame t (mean logits of frames 1..t), validation clips.",
             "| model | metric | " + " | ".join(f"t={t}" for t in range(1, frames + 1)) + " |",
             "|---|---|" + "---|" * frames]
    for key, title in (("tsm_online", "online TSM (step model)"), ("tsn", "TSN")):
        rows = results[key]["per_frame"]
        for metric in ("accuracy", "direction_accuracy"):
            lines.append(f"| {title} | {metric.replace('_', ' ')} | "
                         + " | ".join(f"{r[metric]:.3f}" for r in rows) + " |")
    return "\n".join(lines)
