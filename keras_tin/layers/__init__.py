"""Keras layers of keras_tin."""

from keras_tin.layers.frames import FoldFrames
from keras_tin.layers.frames import FrameConsensus
from keras_tin.layers.frames import UnfoldFrames
from keras_tin.layers.non_local import NonLocalAttention
from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.layers.temporal_interlace import TemporalInterlace
from keras_tin.layers.temporal_shift import TemporalShift
from keras_tin.layers.frame_difference import NextFrameDifference
from keras_tin.layers.temporal_depthwise import TemporalDepthwiseConv1D
from keras_tin.layers.eca import ECA
from keras_tin.layers.tada import TAdaCalibration
from keras_tin.layers.tada import TAdaRouteConv1D
from keras_tin.layers.tada import TAdaRouteInput
from keras_tin.layers.tada import TemporalAveragePooling
from keras_tin.layers.tea import MotionExcitationGate
