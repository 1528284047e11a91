"""Training and evaluation: the paper's recipe behind `keras-tin train/evaluate/predict`
and the scripts in examples/.

    config = TrainConfig(dataset="ucf101", root="/data/ucf101", weights="...", epochs=25)
    result = train(config)          # model.fit with checkpoints, resume, logs
    metrics = evaluate_model(result.model, "ucf101", "/data/ucf101", "test",
                             num_clips=10, num_crops=3)
"""

from keras_tin.training.config import TrainConfig
from keras_tin.training.config import add_config_arguments
from keras_tin.training.config import config_from_args
from keras_tin.training.distribute import make_distribution
from keras_tin.training.evaluation import evaluate_model
from keras_tin.training.examples import run_example
from keras_tin.training.optimizers import SGDL2
from keras_tin.training.optimizers import build_optimizer
from keras_tin.training.optimizers import scaled_lr
from keras_tin.training.optimizers import step_schedule
from keras_tin.training.prediction import predict_files
from keras_tin.training.trainer import build_datasets
from keras_tin.training.trainer import build_model
from keras_tin.training.trainer import train
