"""Utilities: FLOPs counting, what TIN learned."""

from keras_tin.utils.flops import flops
from keras_tin.utils.interlace_stats import interlace_stats
from keras_tin.utils.interlace_stats import plot_interlace_stats
