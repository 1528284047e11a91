"""Running and inspecting exported .tflite files with LiteRT (ai-edge-litert)."""

import os

import numpy as np

INSTALL_HINT = ("Running .tflite files needs LiteRT: pip install ai-edge-litert "
                "(or pip install 'keras-tin[tflite]').")


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return Interpreter


def load_interpreter(model, num_threads=None, delegate=True):
    """A LiteRT Interpreter on a .tflite path or flatbuffer bytes: XNNPACK on CPU, or
    with delegate=False the builtin kernels alone (every op of the file stays a node)."""
    Interpreter = _interpreter_class()
    kwargs = {"num_threads": num_threads}
    if not delegate:
        from ai_edge_litert.interpreter import OpResolverType
        kwargs["experimental_op_resolver_type"] = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), **kwargs)
    else:
        interpreter = Interpreter(model_path=os.fspath(model), **kwargs)
    interpreter.allocate_tensors()
    return interpreter


def op_names(model, delegate=True):
    """Sorted distinct operator names of a .tflite file or flatbuffer ("CONV_2D", ...).

    "DELEGATE" marks nodes XNNPACK took over; Flex ops appear as "FlexXxx" / "CUSTOM".
    delegate=False lists the ops the file holds (no XNNPACK, so no "DELEGATE").
    """
    interpreter = load_interpreter(model, delegate=delegate)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def float_ops(model):
    """{op name: count} of the file's ops that read or write a float32 tensor (builtin
    kernels, no delegate): the float islands of an int8 file."""
    import collections

    interpreter = load_interpreter(model, delegate=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    counts = collections.Counter()
    for op in interpreter._get_ops_details():
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(dtypes[i] == np.float32 for i in tensors):
            counts[op["op_name"]] += 1
    return dict(counts)


class TFLiteModel:
    """Calls a .tflite classifier like a Keras model: float clips in, float outputs out.

    Quantized inputs/outputs (uint8/int8 I/O) are (de)quantized with the file's own
    scale and zero point, so callers always see the model's float semantics.
    """

    def __init__(self, model, num_threads=None):
        self.source = model
        self.interpreter = load_interpreter(model, num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def metadata(self):
        """The file's keras_tin metadata (class names, frames, ...), or None."""
        from keras_tin.export.metadata import read_tflite_metadata
        return read_tflite_metadata(self.source)

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.input["shape"])

    def _quantize_input(self, x):
        dtype = self.input["dtype"]
        scale, zero = self.input["quantization"]
        if dtype in (np.int8, np.uint8, np.int16) and scale:
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    def _dequantize_output(self, y):
        scale, zero = self.output["quantization"]
        if y.dtype != np.float32 and scale:
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def invoke(self, clip):
        """One batch of the file's static shape."""
        self.interpreter.set_tensor(self.input["index"], self._quantize_input(np.asarray(clip)))
        self.interpreter.invoke()
        return self._dequantize_output(self.interpreter.get_tensor(self.output["index"]))

    def __call__(self, clips):
        """Any number of clips (N, frames, H, W, 3), run in batches of the file's batch."""
        clips = np.asarray(clips)
        batch = self.input_shape[0]
        if clips.shape[0] % batch:
            raise ValueError(f"The file takes batches of {batch}; got {clips.shape[0]} clips.")
        return np.concatenate([self.invoke(clips[i:i + batch])
                               for i in range(0, clips.shape[0], batch)])
