"""Which interlace runs where: the rules of keras_tin.ops.dispatch, each as a test."""

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.layers.temporal_interlace import TemporalInterlace
from keras_tin.ops import custom_op, dispatch

FRAMES = 4


@pytest.fixture(scope="module", autouse=True)
def op_loaded():
    assert custom_op.load() is not None, custom_op.failure_reason()


def _op_types(concrete):
    types = set()
    graphs = [concrete.graph]
    while graphs:
        g = graphs.pop()
        for op in g.get_operations():
            types.add(op.type)
        graphs.extend(f.graph for f in getattr(g, "_functions", {}).values()
                      if hasattr(f, "graph"))
    # Nested functions also appear in the function library of the graph def.
    for fdef in concrete.graph.as_graph_def().library.function:
        types.update(node.op for node in fdef.node_def)
    return types


def _inputs(clips=2, c=32, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(clips * FRAMES, size, size, c)).astype(np.float32)


def test_in_xla_context_detection():
    seen = {}

    def probe(tag):
        seen[tag] = dispatch.in_xla_context()
        return tf.constant(0.0)

    probe("eager")
    tf.function(lambda: probe("graph"))()
    tf.function(lambda: probe("xla"), jit_compile=True)()
    inner = tf.function(lambda: probe("nested"))
    tf.function(lambda: inner(), jit_compile=True)()
    tf.function(lambda: probe("jit_false"), jit_compile=False)()
    assert seen == {"eager": False, "graph": False, "xla": True, "nested": True,
                    "jit_false": False}


@pytest.mark.parametrize("delta", [False, True])
def test_auto_uses_op_in_graph_and_portable_under_xla(delta):
    layer = TemporalInterlace(FRAMES)
    x = _inputs()
    layer.build(x.shape)
    call = layer.delta if delta else layer
    spec = tf.TensorSpec(x.shape, tf.float32)
    plain = _op_types(tf.function(call).get_concrete_function(spec))
    xla_fn = tf.function(call, jit_compile=True)
    compiled = _op_types(xla_fn.get_concrete_function(spec))
    assert "TinInterlace" in plain
    assert "TinInterlace" not in compiled
    assert any(t.startswith("BatchMatMul") for t in compiled)
    # And both compute the same thing.
    np.testing.assert_allclose(xla_fn(x).numpy(), tf.function(call)(x).numpy(), atol=1e-5)


def test_forced_custom_op_under_xla_raises_clearly():
    layer = TemporalInterlace(FRAMES, implementation="custom_op")
    x = _inputs()
    layer(x)  # eager: fine
    with pytest.raises(RuntimeError, match="cannot be XLA-compiled"):
        tf.function(layer, jit_compile=True)(x)


def test_portable_only_overrides_every_choice():
    x = _inputs()
    spec = tf.TensorSpec(x.shape, tf.float32)
    for implementation in ("auto", "custom_op"):
        layer = TemporalInterlace(FRAMES, implementation=implementation)
        layer.build(x.shape)
        with dispatch.portable_only():
            types = _op_types(tf.function(layer).get_concrete_function(spec))
        assert "TinInterlace" not in types, implementation


def _tiny_model(implementation, c=32):
    inputs = keras.Input((6, 6, c))
    tin = TemporalInterlace(FRAMES, implementation=implementation)
    h = TemporalConv2D(16, temporal_module=tin, fuse=True)(inputs)  # delta path
    h = TemporalInterlace(FRAMES, shift_div=2, implementation=implementation)(h)  # full path
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3)(h)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_model_fit_custom_op_matches_portable(jit_compile):
    x = _inputs(clips=2)
    y = np.random.default_rng(1).normal(size=(x.shape[0], 3)).astype(np.float32)
    results = {}
    for implementation in ("auto", "portable"):
        keras.utils.set_random_seed(5)
        model = _tiny_model(implementation)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                      jit_compile=jit_compile)
        history = model.fit(x, y, batch_size=x.shape[0], epochs=2, shuffle=False, verbose=0)
        results[implementation] = (history.history["loss"], model.predict(x, verbose=0),
                                   [w.numpy() for w in model.trainable_weights])
    auto, port = results["auto"], results["portable"]
    np.testing.assert_allclose(auto[0], port[0], rtol=1e-5)
    np.testing.assert_allclose(auto[1], port[1], rtol=1e-4, atol=1e-5)
    for a, p in zip(auto[2], port[2]):
        np.testing.assert_allclose(a, p, rtol=1e-4, atol=1e-6)
    assert auto[0][1] != auto[0][0]  # training moved


def test_missing_compiler_warns_once_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIN_OPS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    custom_op._reset_for_tests()
    try:
        x = _inputs()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert dispatch.custom_op_status() == (False, custom_op.failure_reason())
            out = TemporalInterlace(FRAMES)(x)  # auto: portable, no crash
            TemporalInterlace(FRAMES)(x)
        ours = [w for w in caught if "keras_tin" in str(w.message)]
        assert len(ours) == 1 and "compiler not found" in str(ours[0].message)
        assert out.shape == x.shape
        with pytest.raises(RuntimeError, match="implementation='custom_op'.*compiler not found"):
            TemporalInterlace(FRAMES, implementation="custom_op")(x)
    finally:
        monkeypatch.undo()
        custom_op._reset_for_tests()
        assert custom_op.load() is not None


RELOAD = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    x = np.load(sys.argv[2])
    y = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(y, np.load(sys.argv[3]), rtol=1e-5, atol=1e-5)
    assert not any(m.startswith("keras_tin") for m in sys.modules), "keras_tin imported"
    print("RELOADED_OK")
""")


def _saved_op_types(path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    types = set()
    for meta in proto.meta_graphs:
        types.update(node.op for node in meta.graph_def.node)
        for fdef in meta.graph_def.library.function:
            types.update(node.op for node in fdef.node_def)
    return types


def test_saved_model_export_has_no_custom_op_and_loads_without_keras_tin(tmp_path):
    model = _tiny_model("auto")
    x = _inputs(clips=1)
    expected = model.predict(x, verbose=0)
    # Without portable_only the traced graph does contain the op: the context matters.
    unguarded = tmp_path / "unguarded"
    model.export(str(unguarded), format="tf_saved_model", verbose=False)
    assert "TinInterlace" in _saved_op_types(str(unguarded))

    exported = tmp_path / "saved"
    with dispatch.portable_only():
        model.export(str(exported), format="tf_saved_model", verbose=False)
    assert not any(t.startswith("TinInterlace") for t in _saved_op_types(str(exported)))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", expected)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD, str(exported), str(tmp_path / "x.npy"),
         str(tmp_path / "y.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0 and "RELOADED_OK" in proc.stdout, proc.stderr[-3000:]


def test_non_tensorflow_backend_reports_and_falls_back(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, pytest
        from keras_tin.ops import dispatch
        from keras_tin.layers.temporal_interlace import TemporalInterlace
        ok, reason = dispatch.custom_op_status()
        assert not ok and "jax" in reason, reason
        x = np.random.default_rng(0).normal(size=(4, 3, 3, 16)).astype("float32")
        assert TemporalInterlace(2)(x).shape == x.shape
        try:
            TemporalInterlace(2, implementation="custom_op")(x)
        except RuntimeError as err:
            assert "unavailable" in str(err) and "jax" in str(err)
        else:
            raise AssertionError("custom_op on jax did not raise")
        print("JAX_OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]


def test_info_command_reports_versions_backend_and_op(capsys):
    from keras_tin import cli

    assert cli.main(["info", "--no-build"]) == 0
    out = capsys.readouterr().out
    assert f"keras       {keras.__version__}" in out
    assert "backend     tensorflow" in out
    assert f"tensorflow  {tf.__version__}" in out
    assert "custom op   ACTIVE" in out
    assert custom_op.loaded_path() is not None and custom_op.loaded_path() in out


def test_mixed_precision_layer_uses_op_with_float16_inputs():
    x = _inputs(clips=1)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        outs = {}
        for implementation in ("custom_op", "portable"):
            keras.utils.set_random_seed(3)
            layer = TemporalInterlace(FRAMES, implementation=implementation)
            xh = tf.cast(x, tf.float16)
            with tf.GradientTape() as tape:
                y = layer(xh)
                d = layer.delta(xh)
                loss = tf.reduce_sum(tf.cast(y, tf.float32)) + tf.reduce_sum(
                    tf.cast(d, tf.float32) ** 2)
            grads = tape.gradient(loss, layer.trainable_weights)
            assert y.dtype == tf.float16 and d.dtype == tf.float16
            outs[implementation] = [y.numpy().astype(np.float32), d.numpy().astype(np.float32)]
            outs[implementation] += [g.numpy() for g in grads]
    finally:
        keras.config.set_dtype_policy(previous)
    for a, b in zip(outs["custom_op"], outs["portable"]):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-2 * scale)


def test_keras_auto_jit_compile_as_on_a_gpu_falls_back(monkeypatch):
    """Keras resolves jit_compile="auto" to True where a GPU is present (False on this
    CPU-only machine); simulate that resolution and check the XLA step still works."""
    from keras.src.trainers import trainer as trainer_module

    monkeypatch.setattr(trainer_module.Trainer, "_resolve_auto_jit_compile",
                        lambda self: True)
    x = _inputs(clips=2)
    y = np.random.default_rng(2).normal(size=(x.shape[0], 3)).astype(np.float32)
    keras.utils.set_random_seed(7)
    model = _tiny_model("auto")
    model.compile(optimizer="sgd", loss="mse", jit_compile="auto")
    assert model.jit_compile is True
    history = model.fit(x, y, batch_size=x.shape[0], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
