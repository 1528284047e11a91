"""The compiled TIN op against the portable keras.ops path and the NumPy oracle.

These tests need the op: CI builds it (make's set-up, or lazily here) and a failed
build fails them with the reason instead of skipping.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from keras_tin.ops import custom_op, portable
from reference import interlace_np

KERNEL_DIR = custom_op.KERNEL_DIR


@pytest.fixture(scope="module", autouse=True)
def op_module():
    module = custom_op.load()
    assert module is not None, f"the custom op must build here: {custom_op.failure_reason()}"
    return module


def make_inputs(rng, clips, frames, h, w, c, offsets=None):
    x = rng.normal(size=(clips * frames, h, w, c)).astype(np.float32)
    if offsets is None:
        offsets = rng.uniform(-1.999, 1.999, size=(clips, 4))
    weights = rng.uniform(0.05, 2.0, size=(clips, frames, 4))
    return x, np.asarray(offsets, np.float32), weights.astype(np.float32)


SPECIAL_OFFSETS = [
    [0.0, 1.0, -1.0, 2.0 - 1e-6],  # integer-valued: a == 0 exactly
    [-2.0 + 1e-6, 1.999, -1.999, 0.5],  # near +/-2: reach of two frames
    [-0.25, 0.75, -1.5, 1e-7],
]


@pytest.mark.parametrize("offsets", SPECIAL_OFFSETS)
@pytest.mark.parametrize("delta", [False, True])
def test_forward_matches_numpy_and_portable_special_offsets(offsets, delta):
    rng = np.random.default_rng(1)
    frames = 4
    x, off, w = make_inputs(rng, 1, frames, 3, 5, 32, offsets=[offsets])
    ref = interlace_np(x, frames, off.astype(np.float64), w.astype(np.float64))
    f = 8
    if delta:
        ref = ref[..., :f] - x[..., :f]
        got = custom_op.interlace_delta(x, off, w, frames).numpy()
        port = portable.interlace_delta(x, off, w, frames).numpy()
    else:
        got = custom_op.interlace(x, off, w, frames).numpy()
        port = portable.interlace(x, off, w, frames).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, port, rtol=0, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(clips=st.integers(1, 3), frames=st.integers(1, 8), h=st.integers(1, 6),
       w=st.integers(1, 6), groups=st.integers(1, 3), shift_div=st.sampled_from([2, 4, 8]),
       seed=st.integers(0, 2**31 - 1))
def test_forward_property_random_shapes(clips, frames, h, w, groups, shift_div, seed):
    rng = np.random.default_rng(seed)
    c = 4 * groups * shift_div
    x, off, wt = make_inputs(rng, clips, frames, h, w, c)
    off[rng.random(off.shape) < 0.3] = rng.integers(-1, 2)  # some integer offsets
    ref = interlace_np(x, frames, off.astype(np.float64), wt.astype(np.float64), shift_div)
    full = custom_op.interlace(x, off, wt, frames, shift_div).numpy()
    delta = custom_op.interlace_delta(x, off, wt, frames, shift_div).numpy()
    f = c // shift_div
    np.testing.assert_allclose(full, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(delta, ref[..., :f] - x[..., :f], rtol=0, atol=1e-6)


def _grads(fn, x, off, w, frames, upstream):
    xs, os_, ws = (tf.constant(v) for v in (x, off, w))
    with tf.GradientTape() as tape:
        tape.watch([xs, os_, ws])
        loss = tf.reduce_sum(tf.cast(fn(xs, os_, ws, frames), tf.float32) * upstream)
    return [g.numpy() for g in tape.gradient(loss, [xs, os_, ws])]


@pytest.mark.parametrize("delta", [False, True])
@pytest.mark.parametrize("clips,frames", [(1, 8), (3, 4), (2, 2)])
def test_gradients_match_portable(delta, clips, frames):
    rng = np.random.default_rng(clips * 10 + frames)
    x, off, w = make_inputs(rng, clips, frames, 4, 3, 32)
    off[0, :2] = [1.0, -2.0 + 1e-6]
    op_fn = custom_op.interlace_delta if delta else custom_op.interlace
    port_fn = portable.interlace_delta if delta else portable.interlace
    out_shape = port_fn(x, off, w, frames).shape
    upstream = tf.constant(rng.normal(size=out_shape).astype(np.float32))
    got = _grads(op_fn, x, off, w, frames, upstream)
    want = _grads(port_fn, x, off, w, frames, upstream)
    for name, g, p in zip(("x", "offsets", "weights"), got, want):
        assert g.shape == p.shape, name
        scale = max(1.0, float(np.abs(p).max()))
        np.testing.assert_allclose(g, p, rtol=0, atol=1e-5 * scale, err_msg=name)
    assert np.abs(got[1]).max() > 0 and np.abs(got[2]).max() > 0


def _numpy_loss(x, off, w, frames, upstream, delta):
    y = interlace_np(x, frames, off, w)
    if delta:
        f = x.shape[-1] // 4
        y = y[..., :f] - x[..., :f]
    return float(np.sum(y * upstream))


@pytest.mark.parametrize("delta", [False, True])
def test_gradients_match_numerical_differences_of_numpy_oracle(delta):
    """Central differences of the float64 oracle: catches an adjoint shift that moves
    the input gradient the wrong way (a known bug of one published CUDA kernel)."""
    rng = np.random.default_rng(7)
    frames = 4
    # Offsets away from integers so that +/-eps does not cross a floor() boundary.
    x, off, w = make_inputs(rng, 1, frames, 2, 2, 16, offsets=[[0.3, 1.6, -0.7, -1.45]])
    x64, off64, w64 = (v.astype(np.float64) for v in (x, off, w))
    op_fn = custom_op.interlace_delta if delta else custom_op.interlace
    out_shape = op_fn(x, off, w, frames).shape
    upstream = rng.normal(size=out_shape)
    got = _grads(op_fn, x, off, w, frames, tf.constant(upstream.astype(np.float32)))
    eps = 1e-4
    for idx, (value, grad) in enumerate(zip((x64, off64, w64), got)):
        numeric = np.zeros_like(value)
        for pos in np.ndindex(value.shape):
            args = [x64, off64, w64]
            plus, minus = value.copy(), value.copy()
            plus[pos] += eps
            minus[pos] -= eps
            args[idx] = plus
            lp = _numpy_loss(*args, frames, upstream, delta)
            args[idx] = minus
            lm = _numpy_loss(*args, frames, upstream, delta)
            numeric[pos] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4, err_msg=str(idx))


def test_input_gradient_direction_single_frame():
    """A positive offset moves content later, so the gradient flows back earlier."""
    frames = 4
    x = np.zeros((frames, 1, 1, 4), np.float32)
    off = np.array([[1.0, 1.0, 1.0, 1.0]], np.float32)
    w = np.ones((1, frames, 4), np.float32)
    upstream = np.zeros((frames, 1, 1, 4), np.float32)
    upstream[2, 0, 0, 0] = 1.0  # d loss / d y[t=2]
    def fn(*args):
        return custom_op.interlace(*args, shift_div=1)  # all 4 channels interlaced

    dx, _, _ = _grads(fn, x, off, w, frames, tf.constant(upstream))
    expected = np.zeros_like(dx)
    expected[1, 0, 0, 0] = 1.0  # y[2] = x[1] for b = 1
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("dtype,atol", [("float16", 4e-3), ("bfloat16", 3e-2)])
@pytest.mark.parametrize("delta", [False, True])
def test_half_precision_accumulates_in_float32(dtype, atol, delta):
    rng = np.random.default_rng(3)
    frames = 4
    x, off, w = make_inputs(rng, 2, frames, 3, 3, 32)
    xq = tf.cast(tf.constant(x), dtype)
    x_rounded = tf.cast(xq, tf.float32).numpy().astype(np.float64)
    ref = interlace_np(x_rounded, frames, off.astype(np.float64), w.astype(np.float64))
    if delta:
        ref = ref[..., :8] - x_rounded[..., :8]
        got = custom_op.interlace_delta(xq, off, w, frames)
    else:
        got = custom_op.interlace(xq, off, w, frames)
    assert got.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), ref, rtol=1e-2, atol=atol)
    upstream = tf.constant(rng.normal(size=got.shape).astype(np.float32))
    fn = custom_op.interlace_delta if delta else custom_op.interlace
    dx, doff, dw = _grads(fn, xq, off, w, frames, upstream)
    assert dx.dtype == np.dtype(tf.as_dtype(dtype).as_numpy_dtype)
    assert doff.dtype == np.float32 and dw.dtype == np.float32
    _, doff32, dw32 = _grads(portable.interlace_delta if delta else portable.interlace,
                             x_rounded.astype(np.float32), off, w, frames, upstream)
    np.testing.assert_allclose(doff, doff32, rtol=3e-2, atol=3e-1)
    np.testing.assert_allclose(dw, dw32, rtol=3e-2, atol=3e-1)


def test_bad_shapes_raise_clear_errors():
    x = np.zeros((6, 2, 2, 16), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a multiple of frames"):
        custom_op.interlace(x, np.zeros((1, 4)), np.ones((1, 4, 4)), 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="offsets must be"):
        custom_op.interlace(x, np.zeros((2, 4)), np.ones((3, 2, 4)), 2)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="divisible"):
        custom_op.interlace(np.zeros((2, 2, 2, 12), np.float32), np.zeros((1, 4)),
                            np.ones((1, 2, 4)), 2)


def test_graph_mode_static_shapes():
    @tf.function
    def f(x, off, w):
        return custom_op.interlace(x, off, w, 2), custom_op.interlace_delta(x, off, w, 2)

    spec = tf.TensorSpec((None, 4, 4, 32), tf.float32)
    cf = f.get_concrete_function(spec, tf.TensorSpec((None, 4)), tf.TensorSpec((None, 2, 4)))
    full, delta = cf.structured_outputs
    assert full.shape.as_list() == [None, 4, 4, 32]
    assert delta.shape.as_list() == [None, 4, 4, 8]


def test_build_is_atomic_under_concurrent_builds(tmp_path):
    """Two processes whose first use builds the op lazily into one fresh cache: both
    load the same library, and the op works in each."""
    env = dict(os.environ, KERAS_TIN_OPS_CACHE=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    code = ("import numpy as np;"
            "from keras_tin.ops import custom_op;"
            "assert custom_op.load() is not None, custom_op.failure_reason();"
            "y = custom_op.interlace(np.ones((2, 1, 1, 4), np.float32), np.zeros((1, 4)),"
            " np.ones((1, 2, 4)), 2, shift_div=1).numpy();"
            "assert (y == 1).all(), y;"
            "print(custom_op.loaded_path())")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    paths = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(paths) == 1
    path = paths.pop()
    assert path.startswith(str(tmp_path)) and os.path.isfile(path)
    # No temporary build directories are left behind next to the library.
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".build-")]
    assert leftovers == []


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA compiler on this machine")
def test_cuda_kernel_source_compiles_with_nvcc(tmp_path):
    """Compile-only check of the CUDA kernel (no GPU needed to compile)."""
    out = tmp_path / "tin_gpu.o"
    proc = subprocess.run(
        ["nvcc", "-c", "-O3", "-std=c++17", "-x", "cu", "-Xcompiler", "-fPIC",
         f"-I{KERNEL_DIR}", os.path.join(KERNEL_DIR, "tin_interlace_op_gpu.cu.cc"),
         "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 0


def test_build_entry_point_reports_success_and_failure(tmp_path, monkeypatch, capsys):
    assert custom_op.main([]) == 0  # cached: loads the library it names
    assert custom_op.library_path() in capsys.readouterr().out
    monkeypatch.setenv("KERAS_TIN_OPS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "missing-g++"))
    assert custom_op.main([]) == 0  # the Makefile's set-up goes on with the portable path
    assert "NOT built" in capsys.readouterr().err
    assert custom_op.main(["--strict"]) == 1
    assert not any(p.suffix == ".so" for p in tmp_path.rglob("*"))


# ---- non-finite offsets and weights (README "NaN semantics") ---------------------------

def _nan_case(case):
    """Inputs for 2 clips of 4 frames, 16 channels (F = 4: one channel per group)."""
    rng = np.random.default_rng(11)
    x, off, w = make_inputs(rng, 2, 4, 2, 3, 16)
    if case == "nan_offset":
        off[1, 2] = np.nan
    elif case == "nan_weight":
        w[1, 2, 1] = np.nan
    elif case == "nan_weight_both_taps_outside":  # frame 0, offset 1.5: taps -1.5 frames
        off[0, 0] = 1.5
        w[0, 0, 0] = np.nan
    elif case == "inf_offset":
        off[0, 1] = -np.inf
    elif case == "inf_weight":
        w[0, 3, 2] = np.inf
    elif case == "huge_offset":  # finite, but floor() would not fit an int
        off[0, 3] = 3e9
    return x, off, w


def _expected_nan_rows(off, w, frames=4):
    """(N*T, 4) mask: output frame row, group g NaN (the rule of tin_interlace.h)."""
    bad = ~np.isfinite(w) | ~np.isfinite(off)[:, None, :]  # (N, T, 4)
    return bad.reshape(-1, 4)


@pytest.mark.parametrize("case", ["nan_offset", "nan_weight", "nan_weight_both_taps_outside",
                                  "inf_offset", "inf_weight", "huge_offset"])
@pytest.mark.parametrize("delta", [False, True])
def test_non_finite_parameters_match_the_portable_path(case, delta):
    """The op used to cast a NaN offset to int (undefined behaviour) and output zeros
    where the portable path outputs NaN. Now both agree: forward and gradients, NaN
    positions equal, the other values close."""
    frames = 4
    x, off, w = _nan_case(case)
    op_fn = custom_op.interlace_delta if delta else custom_op.interlace
    port_fn = portable.interlace_delta if delta else portable.interlace
    y_op = op_fn(x, off, w, frames).numpy()
    y_port = port_fn(x, off, w, frames).numpy()
    # The documented rule: row (n, t) of group g is NaN iff offsets[n, g] or
    # weights[n, t, g] is not finite; the pass-through channels never are.
    rows = _expected_nan_rows(off, w)
    expected = np.broadcast_to(rows[:, None, None, :], y_port[..., :4].shape)  # F/4 == 1
    np.testing.assert_array_equal(np.isnan(y_port[..., :4]), expected)
    assert not np.isnan(y_port[..., 4:]).any()
    np.testing.assert_allclose(y_op, y_port, rtol=0, atol=1e-5, equal_nan=True)

    upstream = tf.constant(np.random.default_rng(5).normal(size=y_port.shape).astype(np.float32))
    got = _grads(op_fn, x, off, w, frames, upstream)
    want = _grads(port_fn, x, off, w, frames, upstream)
    for name, g, p in zip(("x", "offsets", "weights"), got, want):
        if case == "inf_weight":
            # The dense matrix has Inf * 1 = Inf next to Inf * 0 = NaN; the op gives NaN
            # for both. Non-finite positions agree.
            np.testing.assert_array_equal(np.isfinite(g), np.isfinite(p), err_msg=name)
            g, p = np.where(np.isfinite(p), g, 0), np.where(np.isfinite(p), p, 0)
        finite = np.isfinite(p)
        scale = max(1.0, float(np.abs(p[finite]).max())) if finite.any() else 1.0
        np.testing.assert_allclose(g, p, rtol=0, atol=1e-5 * scale, equal_nan=True,
                                   err_msg=name)
    if case != "huge_offset":
        assert np.isnan(y_op).any() and not np.isnan(y_op).all()
