"""SavedModel export: reloads without keras_tin, equals Keras, never holds the custom op."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from export_helpers import build
from export_helpers import clips

from keras_tin import applications
from keras_tin.export import export_saved_model

# Runs every export of the module in ONE fresh interpreter (TensorFlow start-up is slow).
RELOAD = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.modules["keras_tin"] = None  # any `import keras_tin` now raises ImportError
    import numpy as np
    import tensorflow as tf
    for job in json.loads(sys.argv[1]):
        fn = tf.saved_model.load(job["path"]).signatures[job["signature"]]
        out = fn(clips=tf.constant(np.load(job["clips"])))["predictions"].numpy()
        np.save(job["out"], out)
    print("IMPORTED:" + ",".join(m for m in sys.modules if m.startswith("keras_tin")
                                 and sys.modules[m]))
""")

CASES = {
    # name: (constructor, input_dtype, batch_size, endpoint, clips in the reload)
    "tin_r18_uint8": (applications.TINResNet18, "uint8", None, "serve", 3),
    "tsm_r18_uint8": (applications.TSMResNet18, "uint8", None, "serve", 1),
    "tin_mbv2_float32": (applications.TINMobileNetV2, "float32", 2, "classify", 2),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{case: (SavedModel dir, Keras outputs, outputs of the fresh-process reload)}."""
    root = tmp_path_factory.mktemp("saved_models")
    jobs, results = [], {}
    for i, (case, (constructor, dtype, batch, endpoint, n)) in enumerate(CASES.items()):
        model = build(constructor)
        x = clips(n, seed=i + 1).astype(dtype)
        expected = model(x.astype(np.float32), training=False).numpy()
        path = export_saved_model(model, root / case, input_dtype=dtype, batch_size=batch,
                                  endpoint=endpoint)
        np.save(root / f"{case}_clips.npy", x)
        signature = "serving_default" if endpoint == "serve" else endpoint
        jobs.append(dict(path=str(path), clips=str(root / f"{case}_clips.npy"),
                         out=str(root / f"{case}_out.npy"), signature=signature))
        results[case] = (path, expected)
    script = root / "reload.py"
    script.write_text(RELOAD)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-I", str(script), json.dumps(jobs)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = proc.stdout.strip().splitlines()[-1]
    assert imported == "IMPORTED:", f"the reload imported {imported}"
    return {case: (path, expected, np.load(root / f"{case}_out.npy"))
            for case, (path, expected) in results.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reload_without_keras_tin_equals_keras(exported, case):
    _, expected, got = exported[case]
    assert got.shape == expected.shape
    # Grappler/oneDNN reorder float sums: equal up to float32 rounding (seen: 1.5e-5).
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.ptp(expected) > 0.1  # outputs that differ between classes/clips


@pytest.mark.parametrize("case", ["tin_r18_uint8", "tin_mbv2_float32"])
def test_saved_model_holds_portable_ops_not_the_custom_op(exported, case):
    graph = (exported[case][0] / "saved_model.pb").read_bytes()
    assert b"TinInterlace" not in graph
    assert b"BatchMatMul" in graph  # the portable interlace is what was traced


def test_saved_model_rejects_dynamic_frames():
    model = applications.TINResNet18(frames=8, input_shape=(8, None, None, 3), classes=4)
    with pytest.raises(ValueError, match="static frames, height and width"):
        export_saved_model(model, "unused", input_dtype="uint8")


def test_saved_model_rejects_bad_dtype(tmp_path):
    model = applications.TSNResNet18(frames=2, input_shape=(2, 32, 32, 3), classes=3)
    with pytest.raises(ValueError, match="input_dtype"):
        export_saved_model(model, tmp_path / "sm", input_dtype="float16")
