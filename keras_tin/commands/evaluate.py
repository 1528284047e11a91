"""`keras-tin evaluate`: 1 clip x centre crop, or N clips x 3 crops, averaged per video."""

import json


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help="a .keras model (e.g. runs/x/best.keras), a run checkpoint "
                             "(runs/x/checkpoints/epoch_NNN.weights.h5), an exported .tflite "
                             "file or SavedModel folder, or a pretrained name")
    parser.add_argument("--dataset", required=True, help="dataset name (see keras_tin.data)")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default="val", help="train, val or test (default val)")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal clips per video")
    parser.add_argument("--num-crops", type=int, default=1, choices=(1, 3),
                        help="spatial crops per clip: 1 (centre) or 3")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per clip; must match the model (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch")
    parser.add_argument("--fold", type=int, default=1, help="UCF101/HMDB51 split (1-3)")
    parser.add_argument("--decoder", default="opencv", choices=("opencv", "pyav"))
    parser.add_argument("--steps", type=int, default=None, help="stop after this many batches")
    parser.add_argument("--output-dir", default=None,
                        help="write metrics.json, scores.npz and confusion_matrix.png here")


def run(args):
    from keras_tin.training import checks
    from keras_tin.training.evaluation import evaluate_model
    from keras_tin.training.evaluation import format_metrics
    from keras_tin.training.model_files import open_model

    model = open_model(args.model)
    if args.frames is not None:
        checks.check_frames(model, args.frames, "--frames")
    metrics = evaluate_model(model, args.dataset, args.root, args.split, args.num_clips,
                             args.num_crops, args.batch_size, fold=args.fold,
                             decoder=args.decoder, output_dir=args.output_dir, steps=args.steps)
    print(format_metrics(metrics))
    summary = {k: v for k, v in metrics.items() if k not in ("scores", "labels")}
    print(json.dumps(summary))
    return 0
