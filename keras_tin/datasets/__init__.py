"""Small datasets that ship inside keras_tin (generated, never downloaded)."""

from keras_tin.datasets import synthetic_motion
