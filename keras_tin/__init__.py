"""keras_tin: Temporal Interlacing Networks and temporal ResNets for Keras 3."""

__version__ = "0.1.0"

from keras_tin import applications
from keras_tin import layers
from keras_tin import ops
