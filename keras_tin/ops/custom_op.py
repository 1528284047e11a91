"""Build, cache and load the compiled TIN op (keras_tin/ops/kernels/), and its Python API.

The shared library is compiled with the C++ compiler and TensorFlow's own compile and
link flags on first use (or by `python -m keras_tin.ops.custom_op`, which the Makefile's
set-up runs), then cached under a directory keyed by the TensorFlow version and a hash
of the sources, flags and compiler. Two processes building at once serialise on a file
lock and each writes through a temporary file renamed into place, so a reader never
sees a half-written library. Any failure (no compiler, a build error, a library built
for another TensorFlow) is reported once as a warning and leaves the portable path.

Integrity: a successful build writes `<library>.sha256` (sha256sum format) beside the
library, also through a temporary file renamed into place. Before `tf.load_op_library`
the library's hash is checked against it: a truncated or bit-flipped file, a foreign
`.so` at the cache path or a missing hash file would otherwise crash the process on
load (SIGBUS/SIGSEGV/SIGILL) or fail at the first call. On a mismatch the library is
rebuilt (or, when that fails, the portable path is used) with one warning naming the
file. After loading, the library must register the TIN ops; one that does not is
removed from the cache (the next process rebuilds it) and this process uses the portable
path, again with one warning. (It cannot be reloaded here: the dynamic loader would hand
back the library already loaded from that path.)

Environment:
    KERAS_TIN_OPS_CACHE: cache directory (default: $XDG_CACHE_HOME/keras_tin/ops or
        ~/.cache/keras_tin/ops).
    KERAS_TIN_DISABLE_CUSTOM_OP=1: never build or load the op.
    CXX: the C++ compiler (default g++); NVCC: the CUDA compiler (default nvcc).
"""

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = ("tin_interlace.h", "tin_interlace_gpu.h", "tin_interlace_op.cc",
           "tin_descriptor_op.cc", "tin_interlace_op_gpu.cu.cc",
           "correlation.h", "correlation_gpu.h", "correlation_op.cc",
           "correlation_op_gpu.cu.cc")
# C++ sources of the library, and the CUDA ones compiled with nvcc when TF is a CUDA build.
CXX_SOURCES = ("tin_interlace_op.cc", "tin_descriptor_op.cc", "correlation_op.cc")
CUDA_SOURCES = ("tin_interlace_op_gpu.cu.cc", "correlation_op_gpu.cu.cc")
LIBRARY_NAME = "_tin_interlace_ops.so"
HASH_SUFFIX = ".sha256"
# The op wrappers tf.load_op_library must expose for the library to count as ours.
EXPECTED_OPS = ("tin_interlace", "tin_interlace_grad", "tin_channel_mean",
                "keras_tin_correlation", "keras_tin_correlation_grad")

_lock = threading.Lock()
_loaded = None  # the loaded module, or None
_loaded_path = None
_failure = None  # why the op is unavailable, once known
_warned = False
MISSING = "missing"  # integrity_problem(): no library at all (a first build, no warning)


class BuildError(RuntimeError):
    pass


def cache_root():
    root = os.environ.get("KERAS_TIN_OPS_CACHE")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_tin", "ops")


def _compiler():
    return os.environ.get("CXX") or "g++"


def _nvcc():
    """A CUDA compiler, only when TensorFlow itself is a CUDA build."""
    import tensorflow as tf

    if not tf.test.is_built_with_cuda():
        return None
    return shutil.which(os.environ.get("NVCC") or "nvcc")


def _tf_cuda_include():
    """The CUDA headers inside a CUDA build of TensorFlow's include directory."""
    import tensorflow as tf

    return os.path.join(tf.sysconfig.get_include(), "third_party", "gpus", "cuda", "include")


def _cxx_flags():
    import tensorflow as tf

    # -march=native: the library is built on the machine that loads it (the cache key
    # below includes this CPU's feature flags, so another CPU rebuilds). Without it g++
    # emits SSE2 only, and the descriptor reduction ran 1.8x slower than TensorFlow's own
    # AVX-512 reduction (benchmarks in BENCHMARKS.md).
    return ["-O3", "-march=native", "-fPIC", "-shared", *tf.sysconfig.get_compile_flags()]


def _cpu_signature():
    """This CPU's model and feature flags (part of the cache key for -march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [l for l in f if l.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        import platform
        return platform.processor() + platform.machine()


def _link_flags():
    import tensorflow as tf

    return list(tf.sysconfig.get_link_flags())


def build_key():
    """Directory name: TensorFlow version + hash of sources, flags and compilers."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(KERNEL_DIR, name), "rb") as f:
            digest.update(f.read())
    digest.update(repr((_compiler(), _cxx_flags(), _link_flags(), _nvcc(),
                        _cpu_signature())).encode())
    return f"tf-{tf.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{digest.hexdigest()[:16]}"


def library_path():
    return os.path.join(cache_root(), build_key(), LIBRARY_NAME)


def _run(cmd, cwd):
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise BuildError(f"compiler not found: {cmd[0]!r} ({err})") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        # TensorFlow's headers print pages of deprecation warnings: show the error lines
        # (with the line after each) rather than a tail that may hold warnings only.
        shown = [l for i, l in enumerate(lines) if re.search(r"\berror\b", l)
                 or (i > 0 and re.search(r"\berror\b", lines[i - 1]))][:15]
        raise BuildError(f"`{' '.join(cmd[:2])} ...` failed:\n" + "\n".join(shown or lines[-15:]))


@contextlib.contextmanager
def _file_lock(path, shared=False):
    """An flock on `path`: exclusive for builders, shared for readers that verify."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): the atomic rename alone keeps it safe
        yield
        return
    try:
        handle = open(path, "a")
    except OSError:
        if not shared:
            raise
        yield  # a read-only cache: nobody builds there, so there is nothing to wait for
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hash_path(path):
    """Where the sha256 of the library at `path` is stored."""
    return path + HASH_SUFFIX


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".hash-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the hash from other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def integrity_problem(path):
    """None when the library at `path` matches its stored sha256, else why not.

    MISSING when there is no library at all (a plain first build, not a problem to warn
    about).
    """
    if not os.path.exists(path):
        return MISSING
    try:
        with open(hash_path(path)) as f:
            fields = f.read().split()
    except FileNotFoundError:
        return f"its hash file {hash_path(path)} is missing"
    except OSError as err:
        return f"its hash file {hash_path(path)} cannot be read ({err})"
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        return f"its hash file {hash_path(path)} holds no sha256"
    try:
        actual = file_sha256(path)
    except OSError as err:
        return f"it cannot be read ({err})"
    if actual != fields[0]:
        return (f"its sha256 {actual[:16]}... does not match the {fields[0][:16]}... recorded "
                "when it was built (truncated, corrupted or replaced)")
    return None


def _verified_problem(path):
    """integrity_problem under a shared lock, so that a concurrent build (which holds the
    exclusive lock while it renames the library and its hash) is never seen half done."""
    if not os.path.isdir(os.path.dirname(path)):
        return MISSING
    with _file_lock(path + ".lock", shared=True):
        return integrity_problem(path)


def build(path=None, force=False):
    """Compiles the op into `path` (default: the cache) unless a library whose sha256
    matches its hash file is there. Returns path."""
    path = path or library_path()
    if not force and integrity_problem(path) is None:
        return path
    out_dir = os.path.dirname(path)
    os.makedirs(out_dir, exist_ok=True)
    with _file_lock(path + ".lock"):
        if not force and integrity_problem(path) is None:  # another process built it
            return path
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
            objects = []
            defines = []
            nvcc = _nvcc()
            if nvcc:
                for source in CUDA_SOURCES:
                    cu_obj = os.path.join(tmp, source.replace(".cu.cc", ".o"))
                    _run([nvcc, "-c", "-O3", "-std=c++17", "-x", "cu", "-Xcompiler", "-fPIC",
                          "-DGOOGLE_CUDA=1", f"-I{KERNEL_DIR}",
                          os.path.join(KERNEL_DIR, source), "-o", cu_obj], cwd=tmp)
                    objects.append(cu_obj)
                defines.append("-DGOOGLE_CUDA=1")  # registers the GPU kernels (unverified)
                # The host side (Eigen's GPU device) needs cuda_runtime.h: use the CUDA
                # headers that a CUDA build of TensorFlow ships (the version it was built
                # with), not a path guessed from nvcc's location, which is wrong for a
                # wrapper script or a pip layout. No -lcudart: libtensorflow_framework
                # (in the link flags) exports the CUDA runtime API and loads TensorFlow's
                # own libcudart, which a pip install does not put on the loader's path.
                defines.append(f"-I{_tf_cuda_include()}")
            tmp_lib = os.path.join(tmp, LIBRARY_NAME)
            _run([_compiler(), *_cxx_flags(), *defines, f"-I{KERNEL_DIR}",
                  *(os.path.join(KERNEL_DIR, name) for name in CXX_SOURCES), *objects,
                  "-o", tmp_lib,
                  *_link_flags()], cwd=tmp)
            digest = file_sha256(tmp_lib)
            # Library first, then its hash: a process killed in between leaves a library
            # without a (matching) hash, which the next load rebuilds. Readers take the
            # shared lock, so they never see the pair half replaced.
            os.replace(tmp_lib, path)  # atomic: readers see no library or a whole one
            _write_atomically(hash_path(path), f"{digest}  {os.path.basename(path)}\n")
    return path


def _remove_from_cache(path):
    """Deletes a library (and its hash) that failed after loading, under the build lock."""
    with _file_lock(path + ".lock"):
        for name in (path, hash_path(path)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


def _load_checked(tf, path):
    """tf.load_op_library, then the check that the library registered the TIN ops."""
    module = tf.load_op_library(path)
    missing = [name for name in EXPECTED_OPS if not hasattr(module, name)]
    if missing:
        raise _NotOurLibrary(
            f"the library {path} loaded but does not register the TIN ops ({', '.join(missing)} "
            "missing)")
    return module


class _NotOurLibrary(RuntimeError):
    pass


def _warn_once(message):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def load(build_if_missing=True):
    """The loaded op module, or None (with one warning) when it cannot be built/loaded."""
    global _loaded, _loaded_path, _failure
    with _lock:
        if _loaded is not None or _failure is not None:
            return _loaded
        if os.environ.get("KERAS_TIN_DISABLE_CUSTOM_OP", "") not in ("", "0"):
            _failure = "disabled by KERAS_TIN_DISABLE_CUSTOM_OP"
            return None
        try:
            import tensorflow as tf
        except ImportError:
            _failure = "TensorFlow is not installed"
            return None
        path = None
        problem = None  # an integrity problem of the cached library, for the warning
        try:
            path = library_path()
            problem = _verified_problem(path)
            if problem == MISSING:
                problem = None
                if not build_if_missing:
                    _failure = f"not built ({path} is missing)"
                    return None
                build(path)
            elif problem is not None:
                if not build_if_missing:  # like a missing library: the reason, no warning
                    _failure = (f"the cached library {path} failed its integrity check "
                                f"({problem}); not rebuilt (build_if_missing=False)")
                    return None
                build(path)  # rebuilds: the cached file does not match its hash
            after = _verified_problem(path)
            if after is not None:  # e.g. replaced again while we built
                raise BuildError(f"the library at {path} still fails its check: {after}")
            with _file_lock(path + ".lock", shared=True):
                module = _load_checked(tf, path)
            _register_gradients(tf)
            _loaded, _loaded_path = module, path
        except _NotOurLibrary as err:
            with contextlib.suppress(OSError):
                _remove_from_cache(path)
            _failure = f"{err}; removed it from the cache, the next process rebuilds it"
            _warn_once(
                "keras_tin: the TIN custom TensorFlow op could not be loaded, so "
                f"TemporalInterlace uses the portable keras.ops path. Reason: {_failure}")
            return None
        except Exception as err:  # a failed build must never break the layer
            _failure = f"{type(err).__name__}: {err}"
            if problem is not None:
                _failure = (f"the cached library {path} failed its integrity check ({problem}) "
                            f"and rebuilding it failed: {_failure}")
            _warn_once(
                "keras_tin: the TIN custom TensorFlow op could not be built or loaded, "
                f"so TemporalInterlace uses the portable keras.ops path. Reason: {_failure}")
            return None
        if problem is not None:
            _warn_once(f"keras_tin: the cached TIN op library {path} failed its integrity "
                       f"check ({problem}); it was rebuilt and the rebuilt library is used.")
        return _loaded


def failure_reason():
    return _failure


def loaded_path():
    """Where the loaded library came from (None when not loaded)."""
    return _loaded_path


def _reset_for_tests():
    global _loaded, _loaded_path, _failure, _warned
    with _lock:
        _loaded = _loaded_path = _failure = None
        _warned = False


_gradients_registered = False


def _register_gradients(tf):
    global _gradients_registered
    if _gradients_registered:
        return

    @tf.RegisterGradient("TinInterlace")
    def _tin_interlace_grad(op, dy):
        dx, doffsets, dweights = _loaded.tin_interlace_grad(
            dy, op.inputs[0], op.inputs[1], op.inputs[2],
            frames=op.get_attr("frames"), shift_div=op.get_attr("shift_div"),
            delta=op.get_attr("delta"))
        return dx, doffsets, dweights

    @tf.RegisterGradient("TinChannelMean")
    def _tin_channel_mean_grad(op, dmean):
        # d mean / d x[n, h, w, c] = 1 / (H W) for c < channels, 0 elsewhere.
        x = op.inputs[0]
        shape = tf.shape(x)
        channels = op.get_attr("channels")
        scale = tf.cast(shape[1] * shape[2], tf.float32)
        g = tf.cast(dmean / scale, x.dtype)[:, None, None, :]  # (N, 1, 1, F)
        g = tf.broadcast_to(g, tf.concat([shape[:3], [channels]], 0))  # (N, H, W, F)
        return tf.pad(g, [[0, 0], [0, 0], [0, 0], [0, shape[3] - channels]])

    @tf.RegisterGradient("KerasTinCorrelation")
    def _keras_tin_correlation_grad(op, grad):
        return _loaded.keras_tin_correlation_grad(
            grad, op.inputs[0], op.inputs[1],
            max_displacement=op.get_attr("max_displacement"))

    _gradients_registered = True


def _apply(x, offsets, weights, frames, shift_div, delta):
    module = load()
    if module is None:
        raise RuntimeError(f"the TIN custom op is unavailable: {_failure}")
    import tensorflow as tf

    # Offsets and weights stay float32 whatever x's dtype (mixed precision).
    offsets = tf.cast(offsets, tf.float32)
    weights = tf.cast(weights, tf.float32)
    return module.tin_interlace(x, offsets, weights, frames=frames, shift_div=shift_div,
                                delta=delta)


def interlace(x, offsets, weights, frames, shift_div=4):
    """The custom-op twin of keras_tin.ops.portable.interlace."""
    return _apply(x, offsets, weights, frames, shift_div, delta=False)


def interlace_delta(x, offsets, weights, frames, shift_div=4):
    """The custom-op twin of keras_tin.ops.portable.interlace_delta."""
    return _apply(x, offsets, weights, frames, shift_div, delta=True)


def channel_mean(x, channels):
    """The custom-op twin of the TIN descriptor: mean over H, W of x[..., :channels], float32."""
    module = load()
    if module is None:
        raise RuntimeError(f"the TIN custom op is unavailable: {_failure}")
    return module.tin_channel_mean(x, channels=channels)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m keras_tin.ops.custom_op",
        description="Build the TIN custom TensorFlow op into the cache.")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the build fails (default: warn, exit 0)")
    args = parser.parse_args(argv)
    try:
        path = build(force=args.force)  # also rebuilds a library that fails its hash check
        import tensorflow as tf

        _load_checked(tf, path)
    except Exception as err:
        print(f"keras_tin: custom op NOT built ({type(err).__name__}: {err}); "
              "TemporalInterlace will use the portable path.", file=sys.stderr)
        return 1 if args.strict else 0
    print(f"keras_tin: custom op built: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def has_correlation():
    """Whether the loaded library registers the correlation op (KerasTinCorrelation)."""
    return _loaded is not None and hasattr(_loaded, "keras_tin_correlation")


def correlation(f1, f2, max_displacement=7):
    """The custom-op twin of keras_tin.ops.local_correlation.correlation_portable."""
    module = load()
    if module is None:
        raise RuntimeError(f"the keras_tin custom op library is unavailable: {_failure}")
    if not has_correlation():
        raise RuntimeError(f"the library {_loaded_path} has no correlation op")
    import tensorflow as tf

    f1 = tf.convert_to_tensor(f1)
    f2 = tf.cast(tf.convert_to_tensor(f2), f1.dtype)
    return module.keras_tin_correlation(f1, f2, max_displacement=max_displacement)
