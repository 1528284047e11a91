"""What every script in examples/ shares: flags, ``--smoke``, train, then evaluate."""

import argparse

from keras_tin.training.config import add_config_arguments
from keras_tin.training.config import config_from_args

# a model and run small enough for a CPU test: same code path, tiny numbers
SMOKE = dict(depth=18, base_filters=16, image_size=32, epochs=1, batch_size=2, steps_per_epoch=2,
             validation_steps=1, weights=None, partial_bn=True, verbose=0)


def run_example(defaults, description, argv=None):
    """Parses flags over ``defaults`` (a TrainConfig), trains, evaluates 1 clip x centre crop.

    Returns ``(TrainResult, metrics)``.
    """
    from keras_tin.training.evaluation import evaluate_model
    from keras_tin.training.evaluation import format_metrics
    from keras_tin.training.trainer import train

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model (ResNet-18, width 16, 32 px), 1 epoch of 2 steps: "
                             "checks that the whole pipeline runs")
    add_config_arguments(parser, defaults)
    args = parser.parse_args(argv)
    if args.smoke:
        defaults = defaults.replace(**SMOKE)
    config = config_from_args(args, defaults)
    result = train(config)
    metrics = None
    if config.val_split:
        metrics = evaluate_model(result.model, config.dataset, config.root, config.val_split,
                                 batch_size=config.batch_size, fold=config.fold,
                                 decoder=config.decoder, output_dir=config.output_dir,
                                 steps=config.validation_steps, verbose=config.verbose)
        print(format_metrics(metrics))
    return result, metrics
