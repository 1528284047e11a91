"""A data-parallel step on 2 replicas equals the single-device step on the same global batch.

The CPU is split into 2 logical devices, which TensorFlow allows only before it
initialises, so the check runs in a fresh subprocess.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras
import numpy as np

from keras_tin.applications import freeze_batchnorm
from keras_tin.training import TrainConfig, build_model, make_distribution
from keras_tin.training.trainer import compile_model

# lr 0.1 is stated for a global batch of 4: 1 replica x 4 and 2 replicas x 2 both get 0.1
base = TrainConfig(depth=18, base_filters=16, image_size=32, dropout=0.0, temporal="tin",
                   implementation="portable", lr=0.1, lr_batch_size=4, partial_bn=False)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, size=(4, 8, 32, 32, 3)).astype("float32")
y = np.array([0, 1, 2, 1], "int32")

def one_step(config, dist, init=None):
    with dist.scope():
        keras.utils.set_random_seed(0)
        model = build_model(config, 3, compile=False)
        # per-replica BatchNorm statistics would differ from the global batch's: freeze all BN
        freeze_batchnorm(model, keep_first=False)
        if init is not None:
            model.set_weights(init)
        compile_model(model, config, 3, dist.num_replicas)
    start = [np.array(w) for w in model.trainable_weights]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # one global batch
    model.fit(data, epochs=1, verbose=0)
    return model, start

results = {}
mirrored_dist = make_distribution("mirrored")
for clipnorm in (0.0, 0.05):  # without, and with global-norm clipping that really clips
    config = base.replace(clipnorm=clipnorm)
    single, start = one_step(config.replace(batch_size=4), make_distribution("default"))
    mirrored, start2 = one_step(config.replace(batch_size=2), mirrored_dist)
    results[str(clipnorm)] = {
        "replicas": mirrored_dist.num_replicas,
        "lr": [float(np.array(single.optimizer.learning_rate.value)),
               float(np.array(mirrored.optimizer.learning_rate.value))],
        "same_start": max(float(np.abs(a - b).max()) for a, b in zip(start, start2)),
        "moved": max(float(np.abs(np.array(w) - s).max())
                     for w, s in zip(single.trainable_weights, start)),
        "diff": max(float(np.abs(np.array(a) - np.array(b)).max())
                    for a, b in zip(single.trainable_weights, mirrored.trainable_weights)),
    }
print("RESULT" + json.dumps(results))
"""


def test_two_replica_step_equals_single_device_step(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULT"):])
    print(results)
    assert set(results) == {"0.0", "0.05"}
    for result in results.values():
        assert result["replicas"] == 2
        assert result["lr"] == pytest.approx([0.1, 0.1])  # the documented linear scaling
        assert result["same_start"] == 0.0
        assert result["moved"] > 1e-4  # the step did something the comparison can see
        assert result["diff"] < 1e-2 * result["moved"], result
    # clipping at 0.05 really shrank the step
    assert results["0.05"]["moved"] < 0.5 * results["0.0"]["moved"]
