"""Backend functions behind the temporal layers."""

from keras_tin.ops.portable import interlace
from keras_tin.ops.portable import interlace_delta
from keras_tin.ops.portable import interpolation_matrix
from keras_tin.ops.portable import mirror_groups
from keras_tin.ops.portable import temporal_shift
from keras_tin.ops.portable import temporal_shift_delta
from keras_tin.ops.local_correlation import correlation
