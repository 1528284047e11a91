"""What `import keras_tin` gives a user (README snippets rely on it), in a fresh process."""

import subprocess
import sys


def test_subpackages_are_attributes_after_plain_import():
    code = ("import sys, keras_tin; "
            "heavy = [m for m in ('keras_tin.data', 'keras_tin.export') if m in sys.modules]; "
            "print(heavy); "
            "print(keras_tin.weights.get_labels('kinetics-400')[0]); "
            "print(callable(keras_tin.data.load_dataset), callable(keras_tin.utils.flops), "
            "callable(keras_tin.export.convert_tflite), callable(keras_tin.training.train)); "
            "print('weights' in dir(keras_tin))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()[-4:]
    assert lines == ["[]", "abseiling", "True True True True", "True"]


def test_unknown_attribute_is_an_attribute_error():
    import keras_tin
    try:
        keras_tin.not_a_module
    except AttributeError as e:
        assert "not_a_module" in str(e)
    else:
        raise AssertionError("expected AttributeError")
