"""Export keras_tin models to TensorFlow SavedModel and TFLite (LiteRT).

Every export traces the portable keras.ops path (`keras_tin.ops.dispatch.export_graph`),
so artifacts contain only standard TensorFlow ops / TFLite builtins and load where
keras_tin is not installed; each conv kernel is stored once (unfused TemporalConv2D).
Exports need the TensorFlow Keras backend (KERAS_BACKEND=tensorflow); every artifact
carries keras_tin metadata (class names, frames, input size and scale, normalisation),
read back with `read_metadata(path)`.
"""

from keras_tin.export.calibration import CalibrationRangeError
from keras_tin.export.calibration import representative_dataset
from keras_tin.export.metadata import model_metadata
from keras_tin.export.metadata import read_metadata
from keras_tin.export.metadata import write_keras_metadata
from keras_tin.export.saved_model import export_saved_model
from keras_tin.export.tflite import convert_tflite
from keras_tin.export.tflite import export_tflite
from keras_tin.export.tflite import QUANTIZATIONS
from keras_tin.export.litert import TFLiteModel
from keras_tin.export.litert import op_names
