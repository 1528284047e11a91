"""The portable path on the JAX and PyTorch backends (one subprocess per backend)."""

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "backend_check.py")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layers_and_model_on_backend(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "RESULT" in proc.stdout
