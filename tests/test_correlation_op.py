"""MotionSqueeze's local correlation: the portable keras.ops path and the compiled TF op
(keras_tin.ops.correlation) against a NumPy reference written from ZOO_SPEC.md section 1
step 3 (Pinard's SpatialCorrelationSampler, kernel_size=1, patch_size=2d+1, index
ph * (2d+1) + pw), their gradients against finite differences of that reference, and
the dispatch rules (auto / portable / custom_op, XLA, portable_only, other backends,
TFLite export).

The op must build here (the Makefile's set-up builds it; a failed build fails these
tests with the reason instead of skipping them).
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_tin.ops import correlation, custom_op, dispatch
from keras_tin.ops.local_correlation import correlation_portable

KERNEL_DIR = custom_op.KERNEL_DIR


@pytest.fixture(scope="module", autouse=True)
def op_module():
    module = custom_op.load()
    assert module is not None, f"the custom op must build here: {custom_op.failure_reason()}"
    assert custom_op.has_correlation()
    return module


def correlation_np(f1, f2, d):
    """out[b, y, x, (dy+d)(2d+1) + dx+d] = sum_c f1[b,y,x,c] f2[b,y+dy,x+dx,c], zero outside
    the image: explicit loops over the shifts, float64."""
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    b, h, w, _ = f1.shape
    size = 2 * d + 1
    out = np.zeros((b, h, w, size * size))
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            k = (dy + d) * size + (dx + d)
            for y in range(max(0, -dy), min(h, h - dy)):
                for x in range(max(0, -dx), min(w, w - dx)):
                    out[:, y, x, k] = np.sum(f1[:, y, x] * f2[:, y + dy, x + dx], axis=-1)
    return out


def _pair(rng, shape, dtype=np.float32):
    return (rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype))


SHAPES = [((2, 5, 6, 3), 2), ((1, 4, 9, 17), 3), ((2, 6, 5, 80), 1), ((1, 3, 4, 16), 7),
          ((1, 2, 2, 5), 0), ((3, 1, 7, 33), 4)]


@pytest.mark.parametrize("shape,d", SHAPES)
def test_portable_matches_reference(shape, d):
    f1, f2 = _pair(np.random.default_rng(0), shape)
    expected = correlation_np(f1, f2, d)
    out = np.asarray(correlation(f1, f2, d, implementation="portable"))
    assert out.shape == shape[:3] + ((2 * d + 1) ** 2,)
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-5)
    if d > 4:
        return  # the shifted-slices trace below is slow at d = 7; d <= 4 covers it
    # Unknown H, W take the shifted-slices branch; same numbers.
    dynamic = tf.function(lambda a, b: correlation_portable(a, b, d),
                          input_signature=[tf.TensorSpec((None, None, None, shape[3]))] * 2)
    np.testing.assert_allclose(dynamic(f1, f2).numpy(), expected, atol=2e-5, rtol=1e-5)


def test_index_layout_single_displacement():
    """One non-zero pixel in each input: the response lands at (dy+d)*(2d+1)+(dx+d)."""
    d, size = 2, 5
    f1 = np.zeros((1, 5, 5, 2), np.float32)
    f2 = np.zeros_like(f1)
    f1[0, 2, 1] = [1.0, 2.0]
    f2[0, 1, 3] = [3.0, 0.5]  # dy = -1, dx = +2
    for impl in ("portable", "custom_op"):
        out = np.array(correlation(f1, f2, d, implementation=impl))
        k = (-1 + d) * size + (2 + d)
        assert out[0, 2, 1, k] == pytest.approx(4.0)
        out[0, 2, 1, k] = 0.0
        assert not out.any(), impl


@pytest.mark.parametrize("shape,d", SHAPES)
def test_custom_op_matches_reference_float32(shape, d):
    f1, f2 = _pair(np.random.default_rng(1), shape)
    out = correlation(f1, f2, d, implementation="custom_op")
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), correlation_np(f1, f2, d), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(tf.float16, 2e-2), (tf.bfloat16, 1e-1)])
def test_custom_op_half_precision(dtype, tol):
    f1, f2 = _pair(np.random.default_rng(2), (2, 5, 6, 40))
    a, b = tf.cast(f1, dtype), tf.cast(f2, dtype)
    out = correlation(a, b, 3, implementation="custom_op")
    assert out.dtype == dtype
    # Reference on the rounded inputs: only the accumulation and the output rounding differ.
    expected = correlation_np(tf.cast(a, tf.float32), tf.cast(b, tf.float32), 3)
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected,
                               atol=tol, rtol=tol)
    # Gradients in half precision agree with the float32 op's.
    g = tf.cast(np.random.default_rng(3).normal(size=out.shape), dtype)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        loss = tf.reduce_sum(tf.cast(correlation(a, b, 3, implementation="custom_op") * g,
                                     tf.float32))
    d1, d2 = tape.gradient(loss, [a, b])
    a32, b32, g32 = (tf.cast(t, tf.float32) for t in (a, b, g))
    with tf.GradientTape() as tape:
        tape.watch([a32, b32])
        loss = tf.reduce_sum(correlation(a32, b32, 3, implementation="custom_op") * g32)
    e1, e2 = tape.gradient(loss, [a32, b32])
    for got, want in ((d1, e1), (d2, e2)):
        assert got.dtype == dtype
        np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want.numpy(),
                                   atol=tol * 10, rtol=tol)


def _numerical_grads(f1, f2, d, g, eps=1e-3):
    """Central differences of sum(correlation_np * g) w.r.t. each element of f1 and f2."""
    grads = []
    for which in (0, 1):
        base = [np.asarray(f1, np.float64), np.asarray(f2, np.float64)]
        grad = np.zeros_like(base[which])
        for idx in np.ndindex(grad.shape):
            plus = [t.copy() for t in base]
            minus = [t.copy() for t in base]
            plus[which][idx] += eps
            minus[which][idx] -= eps
            grad[idx] = (np.sum(correlation_np(*plus, d) * g)
                         - np.sum(correlation_np(*minus, d) * g)) / (2 * eps)
        grads.append(grad)
    return grads


def _tape_grads(f1, f2, d, g, implementation, jit=False):
    def run(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = tf.reduce_sum(correlation(a, b, d, implementation=implementation) * g)
        return tape.gradient(loss, [a, b])

    fn = tf.function(run, jit_compile=True) if jit else run
    return [t.numpy() for t in fn(tf.constant(f1), tf.constant(f2))]


@pytest.mark.parametrize("implementation", ["custom_op", "portable"])
def test_gradients_match_finite_differences_of_reference(implementation):
    rng = np.random.default_rng(4)
    f1, f2 = _pair(rng, (1, 3, 4, 3))
    d = 1
    g = rng.normal(size=(1, 3, 4, 9))
    expected = _numerical_grads(f1, f2, d, g)
    got = _tape_grads(f1, f2, d, g.astype(np.float32), implementation)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def test_op_gradients_equal_portable_gradients_in_graph_mode():
    rng = np.random.default_rng(5)
    f1, f2 = _pair(rng, (2, 7, 6, 20))
    d = 3
    g = rng.normal(size=(2, 7, 6, 49)).astype(np.float32)

    @tf.function
    def op_grads(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = tf.reduce_sum(correlation(a, b, d, implementation="custom_op") * g)
        return tape.gradient(loss, [a, b])

    got = [t.numpy() for t in op_grads(tf.constant(f1), tf.constant(f2))]
    want = _tape_grads(f1, f2, d, g, "portable", jit=True)  # portable also under XLA
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def _graph_op_types(fn, *args):
    concrete = tf.function(fn).get_concrete_function(*args)
    types = {op.type for op in concrete.graph.get_operations()}
    for fdef in concrete.graph.as_graph_def().library.function:
        types.update(node.op for node in fdef.node_def)
    return types


def test_dispatch_rules():
    f1, f2 = _pair(np.random.default_rng(6), (1, 4, 4, 8))
    spec = [tf.TensorSpec(f1.shape, tf.float32)] * 2
    auto = _graph_op_types(lambda a, b: correlation(a, b, 1), *spec)
    assert "KerasTinCorrelation" in auto
    forced = _graph_op_types(lambda a, b: correlation(a, b, 1, implementation="custom_op"), *spec)
    assert "KerasTinCorrelation" in forced
    portable = _graph_op_types(lambda a, b: correlation(a, b, 1, implementation="portable"),
                               *spec)
    assert "KerasTinCorrelation" not in portable
    assert any(t.startswith("BatchMatMul") for t in portable), portable

    def under_portable_only(a, b):
        with dispatch.portable_only():
            return correlation(a, b, 1, implementation="custom_op")

    assert "KerasTinCorrelation" not in _graph_op_types(under_portable_only, *spec)
    # correlation_fn is the same dispatch as a function.
    assert "KerasTinCorrelation" in _graph_op_types(
        lambda a, b: dispatch.correlation_fn("auto")(a, b, 1), *spec)

    # XLA: auto falls back to the portable path (and gives the same numbers) ...
    xla_auto = tf.function(lambda a, b: correlation(a, b, 1), jit_compile=True)
    np.testing.assert_allclose(xla_auto(f1, f2).numpy(), correlation_np(f1, f2, 1),
                               atol=2e-5, rtol=1e-5)
    # ... and a forced custom_op says why it cannot run.
    xla_forced = tf.function(lambda a, b: correlation(a, b, 1, implementation="custom_op"),
                             jit_compile=True)
    with pytest.raises(RuntimeError, match="cannot be XLA-compiled"):
        xla_forced(f1, f2)


def test_symbolic_keras_inputs_build_a_functional_model():
    import keras

    a = keras.Input((5, 6, 4))
    b = keras.Input((5, 6, 4))
    model = keras.Model([a, b], correlation(a, b, 1))
    assert model.output.shape == (None, 5, 6, 9)
    f1, f2 = _pair(np.random.default_rng(12), (2, 5, 6, 4))
    np.testing.assert_allclose(model.predict([f1, f2], verbose=0), correlation_np(f1, f2, 1),
                               atol=2e-5, rtol=1e-5)


def test_custom_op_unavailable_raises_and_auto_falls_back(monkeypatch):
    f1, f2 = _pair(np.random.default_rng(7), (1, 3, 3, 4))
    monkeypatch.setattr(dispatch, "_correlation_status",
                        lambda: (False, "disabled for this test"))
    with pytest.raises(RuntimeError, match="correlation op is unavailable: disabled for this"):
        correlation(f1, f2, 1, implementation="custom_op")
    types = _graph_op_types(lambda a, b: correlation(a, b, 1),
                            *[tf.TensorSpec(f1.shape, tf.float32)] * 2)
    assert "KerasTinCorrelation" not in types
    np.testing.assert_allclose(np.asarray(correlation(f1, f2, 1)), correlation_np(f1, f2, 1),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["auto", "portable", "custom_op"])
def test_bad_arguments_raise_clear_errors(implementation):
    f1, f2 = _pair(np.random.default_rng(8), (1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"max_displacement=-1"):
        correlation(f1, f2, -1, implementation=implementation)
    with pytest.raises(ValueError, match=r"max_displacement=2\.5"):
        correlation(f1, f2, 2.5, implementation=implementation)
    with pytest.raises(ValueError, match=r"max_displacement=True"):
        correlation(f1, f2, True, implementation=implementation)
    with pytest.raises(ValueError, match=r"f1\.shape=\(1, 4, 4, 3\), f2\.shape=\(1, 4, 5, 3\)"):
        correlation(f1, f2[:, :, :1].repeat(5, axis=2), 1, implementation=implementation)
    with pytest.raises(ValueError, match=r"f1 of rank 4.*f1\.shape=\(4, 4, 3\)"):
        correlation(f1[0], f2[0], 1, implementation=implementation)
    assert np.asarray(correlation(f1, f2, np.int64(1), implementation=implementation)).shape \
        == (1, 4, 4, 9)
    with pytest.raises(ValueError, match=r"implementation='cuda'"):
        correlation(f1, f2, 1, implementation="cuda")


def test_raw_op_rejects_inconsistent_shapes(op_module):
    f1, f2 = _pair(np.random.default_rng(9), (1, 4, 4, 3))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="same shape|Dimension"):
        op_module.keras_tin_correlation(f1, f2[:, :3], max_displacement=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grad must have shape \[1,4,4,9\]"):
        op_module.keras_tin_correlation_grad(np.zeros((1, 4, 4, 8), np.float32), f1, f2,
                                             max_displacement=1)


def test_static_shape_inference_in_graph():
    spec = tf.TensorSpec((None, 6, 5, 8), tf.float32)
    for impl in ("custom_op", "portable"):
        concrete = tf.function(lambda a, b: correlation(a, b, 2, implementation=impl)) \
            .get_concrete_function(spec, spec)
        assert concrete.structured_outputs.shape.as_list() == [None, 6, 5, 25], impl


def test_tflite_export_of_portable_path_is_builtins_only(tmp_path):
    from keras_tin.export.litert import load_interpreter, op_names

    f1, f2 = _pair(np.random.default_rng(10), (1, 5, 6, 8))

    @tf.function(input_signature=[tf.TensorSpec(f1.shape, tf.float32)] * 2)
    def model(a, b):
        return correlation(a, b, 2)  # "auto": the op, unless traced for export

    with dispatch.portable_only():
        concrete = model.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    names = op_names(flatbuffer, delegate=False)
    assert not [n for n in names if n.startswith("Flex") or n == "CUSTOM"], names
    assert "BATCH_MATMUL" in names, names
    interpreter = load_interpreter(flatbuffer, delegate=False)
    inputs = interpreter.get_input_details()
    for detail, value in zip(inputs, (f1, f2)):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    # Input order of the flatbuffer follows the signature; both inputs have one shape, so
    # check against the reference with either order.
    candidates = [correlation_np(f1, f2, 2), correlation_np(f2, f1, 2)]
    assert min(np.abs(out - c).max() for c in candidates) < 1e-4


BACKEND_CODE = textwrap.dedent("""
    import numpy as np
    import keras
    from keras_tin.ops import correlation, dispatch
    assert keras.backend.backend() == "{backend}"
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    f2 = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    expected = np.load("{expected}")
    out = keras.ops.convert_to_numpy(correlation(f1, f2, 2))
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-5)
    ok, reason = dispatch.custom_op_status()
    assert not ok and "{backend}" in reason, reason
    try:
        correlation(f1, f2, 2, implementation="custom_op")
    except RuntimeError as err:
        assert "unavailable" in str(err) and "{backend}" in str(err), err
    else:
        raise AssertionError("custom_op on {backend} did not raise")
    print("BACKEND_OK")
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_portable_path_on_other_backends(backend, tmp_path):
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    f2 = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    np.save(tmp_path / "expected.npy", correlation_np(f1, f2, 2))
    code = BACKEND_CODE.format(backend=backend, expected=tmp_path / "expected.npy")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "BACKEND_OK" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA compiler on this machine")
def test_cuda_sources_compile_with_nvcc(tmp_path):
    """Compile-only check (no GPU needed to compile, none here to run) of the CUDA kernels
    correlation_op_gpu.cu.cc and of the kernels tests/test_correlation_cuda_cupy.py hands
    to NVRTC, as one translation unit (one nvcc run)."""
    from test_correlation_cuda_cupy import SOURCE

    source = tmp_path / "correlation_all.cu"
    source.write_text('#include "correlation_op_gpu.cu.cc"\n' + SOURCE)
    out = tmp_path / "correlation_all.o"
    proc = subprocess.run(["nvcc", "-c", "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                           f"-I{KERNEL_DIR}", str(source), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 0
    # Both the TF launchers and the CuPy test kernels are in the object.
    symbols = subprocess.run(["nm", "-C", str(out)], capture_output=True, text=True).stdout \
        if shutil.which("nm") else ""
    if symbols:
        assert "kt_corr::gpu::Forward<float>" in symbols and "grad" in symbols


HOST_HARNESS = r"""
#include "correlation.h"
static kt_corr::Dims dims(long long b, int h, int w, int c, int md) {
  kt_corr::Dims d; d.batch = b; d.height = h; d.width = w; d.channels = c; d.max_disp = md;
  return d;
}
extern "C" void forward(const float* f1, const float* f2, float* y, long long b, int h,
                        int w, int c, int md) {
  const kt_corr::Dims d = dims(b, h, w, c, md);
  for (long long i = 0; i < d.pixels() * d.out_channels(); ++i)
    y[i] = kt_corr::forward_element(f1, f2, d, i);
}
extern "C" void grads(const float* g, const float* f1, const float* f2, float* df1,
                      float* df2, long long b, int h, int w, int c, int md) {
  const kt_corr::Dims d = dims(b, h, w, c, md);
  for (long long i = 0; i < d.pixels() * d.channels; ++i) {
    df1[i] = kt_corr::grad_f1_element(g, f2, d, i);
    df2[i] = kt_corr::grad_f2_element(g, f1, d, i);
  }
}
"""


@pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None, reason="no C++ compiler")
def test_cuda_element_functions_on_the_host(tmp_path):
    """correlation.h's per-element functions (all the CUDA kernels compute) built for the
    host with g++ and called through ctypes: forward == reference, gradients == the
    finite-difference-checked portable gradients. The CUDA launch itself is not run."""
    import ctypes

    source = tmp_path / "harness.cc"
    source.write_text(HOST_HARNESS)
    lib_path = tmp_path / "harness.so"
    proc = subprocess.run([os.environ.get("CXX") or "g++", "-O1", "-std=c++17", "-shared",
                           "-fPIC", f"-I{KERNEL_DIR}", str(source), "-o", str(lib_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lib = ctypes.CDLL(str(lib_path))
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    rng = np.random.default_rng(11)
    for shape, d in [((2, 5, 6, 3), 2), ((1, 4, 7, 17), 7)]:
        f1, f2 = _pair(rng, shape)
        b, h, w, c = shape
        dims = (ctypes.c_longlong(b), ctypes.c_int(h), ctypes.c_int(w), ctypes.c_int(c),
                ctypes.c_int(d))
        y = np.zeros(shape[:3] + ((2 * d + 1) ** 2,), np.float32)
        lib.forward(ptr(f1), ptr(f2), ptr(y), *dims)
        np.testing.assert_allclose(y, correlation_np(f1, f2, d), atol=2e-5, rtol=1e-5)
        g = rng.normal(size=y.shape).astype(np.float32)
        df1, df2 = np.zeros_like(f1), np.zeros_like(f2)
        lib.grads(ptr(g), ptr(f1), ptr(f2), ptr(df1), ptr(df2), *dims)
        want = _tape_grads(f1, f2, d, g, "portable")
        np.testing.assert_allclose(df1, want[0], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(df2, want[1], atol=1e-4, rtol=1e-5)
