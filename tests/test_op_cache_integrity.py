"""A damaged or foreign library in the op cache never crashes the process.

Each case prepares a temporary cache (KERAS_TIN_OPS_CACHE) and runs a fresh Python process
that loads the op and applies the interlace through dispatch ("auto"): a crash on load
(SIGBUS/SIGSEGV/SIGILL) kills only that process. All cases run at once (each child spends
most of its time importing TensorFlow). Rebuilding takes no real compile: CXX is either a
stand-in that "compiles" by copying this session's good library to its -o argument (the
op then works after the rebuild) or /bin/false (the rebuild fails and the portable path
is used). Every case must end with a working interlace and exactly one warning. Real
builds are covered by tests/test_custom_op.py.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from keras_tin.ops import custom_op

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILING_CXX = shutil.which("false") or "/bin/false"
COPYING_CXX = """#!/bin/sh
# Stands in for g++: the output (-o) becomes a copy of $KERAS_TIN_TEST_GOOD_LIBRARY.
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then exec cp "$KERAS_TIN_TEST_GOOD_LIBRARY" "$2"; fi
  shift
done
exit 1
"""

CHILD = r"""
import json, os, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from keras_tin.ops import custom_op, dispatch
    module = custom_op.load()
    x = np.arange(16, dtype=np.float32).reshape(4, 1, 1, 4)
    # Offsets 0, weights 1: the interlace is the identity on either path.
    y = dispatch.interlace_fn("auto")(x, np.zeros((1, 4), np.float32),
                                      np.ones((1, 4, 4), np.float32), 4, 1)
    y = np.asarray(y)
print("RESULT " + json.dumps({
    "loaded": module is not None,
    "identity": bool(np.array_equal(y, x)),
    "warnings": [str(w.message) for w in caught
                 if "keras_tin" in str(w.message) and issubclass(w.category, RuntimeWarning)],
    "path": custom_op.library_path(),
}))
"""


def _foreign_library():
    for name in ("markupsafe._speedups", "_bisect", "_json"):
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".so"):
            return spec.origin
    pytest.skip("no shared library to stand in for a foreign .so")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _hash_path(path):
    return path + ".sha256"  # sha256sum format: "<hex>  <name>"


def _write_hash(path, source):
    with open(_hash_path(path), "w") as f:
        f.write(f"{_sha256(source)}  {os.path.basename(path)}\n")


def _truncate(path, good):
    shutil.copyfile(good, path)
    _write_hash(path, good)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(good) // 2)


def _flip(path, good):
    shutil.copyfile(good, path)
    _write_hash(path, good)
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2  # inside the code: a bit-flipped load may SIGILL/SIGSEGV
    for i in range(middle, middle + 256):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _foreign_stale_hash(path, good):
    shutil.copyfile(_foreign_library(), path)
    _write_hash(path, good)  # the hash of the library that used to be there


def _foreign_own_hash(path, good):
    # The hash matches: only the check after loading can tell it is not the TIN op.
    shutil.copyfile(_foreign_library(), path)
    _write_hash(path, path)


def _missing_hash(path, good):
    shutil.copyfile(good, path)


CASES = {
    # name: (prepare, rebuild succeeds, expected: op loaded, words in the warning)
    "truncated": (_truncate, True, True, ("integrity check", "does not match", "rebuilt")),
    "flipped_bytes": (_flip, False, False, ("integrity check", "does not match",
                                            "rebuilding it failed")),
    "foreign_so_stale_hash": (_foreign_stale_hash, True, True,
                              ("integrity check", "does not match", "rebuilt")),
    "foreign_so_matching_hash": (_foreign_own_hash, False, False,
                                 ("does not register the TIN ops", "removed")),
    "missing_hash_file": (_missing_hash, True, True, ("integrity check", "is missing",
                                                       "rebuilt")),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    assert custom_op.load() is not None, custom_op.failure_reason()
    good = custom_op.loaded_path()  # the default cache's library (make set-up, or built now)
    base = tmp_path_factory.mktemp("op-cache")
    copying_cxx = base / "copying-cxx"
    copying_cxx.write_text(COPYING_CXX)
    copying_cxx.chmod(0o755)
    procs = {}
    for name, (prepare, rebuild_works, _, _) in CASES.items():
        env = dict(os.environ, KERAS_TIN_OPS_CACHE=str(base / name), TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=REPO, KERAS_BACKEND="tensorflow",
                   CXX=str(copying_cxx) if rebuild_works else FAILING_CXX,
                   KERAS_TIN_TEST_GOOD_LIBRARY=good)
        env.pop("KERAS_TIN_DISABLE_CUSTOM_OP", None)
        # The library path depends on the cache and the compiler (the build key).
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KERAS_TIN_OPS_CACHE", env["KERAS_TIN_OPS_CACHE"])
            mp.setenv("CXX", env["CXX"])
            path = custom_op.library_path()
        os.makedirs(os.path.dirname(path))
        prepare(path, good)
        procs[name] = (path, subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    out = {}
    for name, (path, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
        result = json.loads(lines[-1][len("RESULT "):]) if lines else None
        out[name] = (path, proc.returncode, result, stderr[-3000:])
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cached_library_ends_with_a_working_interlace_and_one_warning(results, case):
    path, returncode, result, stderr = results[case]
    _, _, loaded, words = CASES[case]
    assert returncode == 0, (f"{case}: the process died (returncode {returncode}, a negative "
                             f"value is the signal):\n{stderr}")
    assert result is not None, stderr
    assert result["path"] == path
    assert result["identity"], case
    assert result["loaded"] is loaded, result["warnings"]
    assert len(result["warnings"]) == 1, result["warnings"]
    message = result["warnings"][0]
    assert path in message, message  # names the file
    for word in words:
        assert word in message, message
    if loaded:  # rebuilt: the cache now holds the library and its matching hash
        with open(_hash_path(path)) as f:
            assert f.read().split()[0] == _sha256(path)
    elif case == "foreign_so_matching_hash":  # removed, so that the next process rebuilds
        assert not os.path.exists(path) and not os.path.exists(_hash_path(path))


def test_build_writes_the_hash_atomically_beside_the_library():
    path = custom_op.build()
    with open(_hash_path(path)) as f:
        digest, name = f.read().split()
    assert digest == _sha256(path) and name == os.path.basename(path)
    assert custom_op.integrity_problem(path) is None
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".hash-")]
    assert leftovers == []
