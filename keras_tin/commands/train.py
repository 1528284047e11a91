"""`keras-tin train`: the paper's recipe on a benchmark or a folder of videos."""


def add_arguments(parser):
    from keras_tin.training.config import add_config_arguments

    add_config_arguments(parser)


def run(args):
    from keras_tin.training.config import config_from_args
    from keras_tin.training.trainer import train

    config = config_from_args(args)
    result = train(config)
    print(f"Trained {config.epochs} epochs; outputs in {result.output_dir} "
          f"(model.keras, best.keras, log.csv, checkpoints/)")
    return 0
