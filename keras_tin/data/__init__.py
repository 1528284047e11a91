"""Video data: decoding, TSN sampling, augmentation, dataset adapters and tf.data pipelines.

Entry point::

    ds, info = keras_tin.data.load_dataset("ucf101", "/data/ucf101", split="train",
                                           frames=8, batch_size=8, with_info=True)
    model = keras_tin.applications.TINResNet50(frames=8, classes=info.num_classes)
    model.fit(ds, ...)

Test with multiple views, averaged per video::

    test = keras_tin.data.load_dataset("ucf101", root, split="test", num_clips=2, num_crops=3)
    result = keras_tin.data.average_views(model, test)
    result.accuracy(1)

Bad files are skipped and counted (``info.errors``), each reported once per run;
``on_error="raise"`` fails on the first (`raising_data_errors` gives the `DataError`
itself where TensorFlow carried it). A flat ``root/<class>/`` folder is split per
class into train and held-out val/test parts (``val_fraction``, 0.2), and is not
flipped unless ``flip=True``.
"""

from keras_tin.data.adapters import ADAPTERS
from keras_tin.data.adapters import DatasetInfo
from keras_tin.data.adapters import Sample
from keras_tin.data.adapters import list_samples
from keras_tin.data.decoding import count_frames
from keras_tin.data.decoding import read_frames
from keras_tin.data.errors import DataError
from keras_tin.data.errors import ErrorLog
from keras_tin.data.errors import raising_data_errors
from keras_tin.data.evaluation import ViewScores
from keras_tin.data.evaluation import average_views
from keras_tin.data.pipeline import ClipLoader
from keras_tin.data.pipeline import build_dataset
from keras_tin.data.pipeline import load_dataset

DATASETS = tuple(ADAPTERS)
