"""JAX backend: `strategy="data_parallel"` with ``devices=2`` (keras.distribution.DataParallel
over 2 CPU devices made by XLA_FLAGS=--xla_force_host_platform_device_count=2, which must
be set before jax is imported: subprocesses) trains one epoch to the same weights as one
device with the same global batch."""

import json
import os

import numpy as np

import scaleout_helpers as h

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaleout_worker.py")


def test_data_parallel_on_two_jax_devices_equals_one_device(tmp_path):
    h.make_folder_dataset(tmp_path / "data", per_class=4)
    base = dict(dataset="folder", root=str(tmp_path / "data"), val_split="",
                arch="tsn_resnet18", base_filters=4, frames=2, image_size=16, epochs=1, lr=0.1,
                lr_batch_size=4, lr_steps=[], dropout=0.0, partial_bn=False,
                deterministic=True, implementation="portable", verbose=0, seed=3)
    jax_env = dict(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    two = h.start([WORKER, json.dumps(dict(base, strategy="data_parallel", devices=2,
                                           batch_size=2, output_dir=str(tmp_path / "two")))],
                  str(tmp_path / "two.log"), **jax_env)
    one = h.start([WORKER, json.dumps(dict(base, batch_size=4, output_dir=str(tmp_path / "one")))],
                  str(tmp_path / "one.log"), **jax_env)
    try:
        assert h.wait_all([two, one], 240) == [0, 0], [h.tail(two), h.tail(one)]
    finally:
        h.stop(two, one)
    import h5py

    def weights(folder):
        out = []
        with h5py.File(str(folder / "checkpoints" / "epoch_001.weights.h5"), "r") as f:
            f.visititems(lambda name, obj: out.append((name, np.array(obj)))
                         if isinstance(obj, h5py.Dataset) else None)
        return dict(out)

    a, b = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert a.keys() == b.keys() and len(a) > 10
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    moved = max(float(np.abs(b[k]).max()) for k in b if "optimizer" not in k)
    print(f"2 JAX devices vs 1: max weight difference {diff:.3g}")
    assert diff < 1e-5, diff
    assert moved > 0
