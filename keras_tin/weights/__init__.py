"""Pretrained weights: manifest, hash-checked downloads, safe PyTorch checkpoint reading
and exact conversion of the published TIN/TSM/TSN checkpoints."""

from keras_tin.weights.convert import assign_state_dict
from keras_tin.weights.convert import convert_checkpoint
from keras_tin.weights.convert import load_torch_checkpoint
from keras_tin.weights.labels import decode_predictions
from keras_tin.weights.labels import get_labels
from keras_tin.weights.labels import list_labels
from keras_tin.weights.labels import read_label_file
from keras_tin.weights.loading import load_weights
from keras_tin.weights.loading import pretrained
from keras_tin.weights.pth_reader import read_checkpoint
from keras_tin.weights.registry import download
from keras_tin.weights.registry import get_record
from keras_tin.weights.registry import list_pretrained
