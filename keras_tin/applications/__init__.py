"""Temporal ResNets: TIN, and the paper's baselines TSM and TSN."""

from keras_tin.applications.partial_bn import freeze_batchnorm
from keras_tin.applications.temporal_resnet import TemporalResNet
from keras_tin.applications.temporal_resnet import TINResNet18
from keras_tin.applications.temporal_resnet import TINResNet34
from keras_tin.applications.temporal_resnet import TINResNet50
from keras_tin.applications.temporal_resnet import TINResNet101
from keras_tin.applications.temporal_resnet import TSMResNet18
from keras_tin.applications.temporal_resnet import TSMResNet34
from keras_tin.applications.temporal_resnet import TSMResNet50
from keras_tin.applications.temporal_resnet import TSMResNet101
from keras_tin.applications.temporal_resnet import TSNResNet18
from keras_tin.applications.temporal_resnet import TSNResNet34
from keras_tin.applications.temporal_resnet import TSNResNet50
from keras_tin.applications.temporal_resnet import TSNResNet101
from keras_tin.applications.temporal_resnet import TSNResNet152
from keras_tin.applications.temporal_resnet import TAda2DResNet50
from keras_tin.applications.temporal_resnet import TEARes2Net50
from keras_tin.applications.temporal_resnet import STMResNet50
from keras_tin.applications.temporal_resnet import TCPResNet50
from keras_tin.applications.temporal_resnet import TCPResNet152
from keras_tin.applications.temporal_resnet import TSNRes2Net50
from keras_tin.applications.mobilenet_v2 import TemporalMobileNetV2
from keras_tin.applications.mobilenet_v2 import TINMobileNetV2
from keras_tin.applications.mobilenet_v2 import TSMMobileNetV2
from keras_tin.applications.mobilenet_v2 import TSNMobileNetV2
