"""`keras-tin predict VIDEO...`: top-k labels with scores."""

import json


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", help="video files or frame folders")
    parser.add_argument("--model", required=True,
                        help="a .keras model, a run checkpoint (epoch_NNN.weights.h5), an "
                             "exported .tflite file or SavedModel folder, or a pretrained name")
    parser.add_argument("--labels", default=None,
                        help="class names file (one per line), or 'ucf101'/'hmdb51' (default: "
                             "labels.txt beside the model, or the pretrained weights' labels)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--num-clips", type=int, default=1)
    parser.add_argument("--num-crops", type=int, default=1, choices=(1, 3))
    parser.add_argument("--decoder", default="opencv", choices=("opencv", "pyav"))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a list")


def _stored_class_names(path):
    """The class names an exported or saved file carries in its keras_tin metadata."""
    if path.endswith(".h5"):
        return None
    from keras_tin.export import read_metadata

    try:
        metadata = read_metadata(path)
    except (ValueError, OSError):
        return None
    return (metadata or {}).get("class_names") or None


def run(args):
    from keras_tin.training.model_files import labels_file_for
    from keras_tin.training.model_files import open_model
    from keras_tin.training.prediction import find_labels
    from keras_tin.training.prediction import format_predictions
    from keras_tin.training.prediction import predict_files
    from keras_tin.weights import registry

    model = open_model(args.model)
    pretrained = args.model if registry.is_pretrained_name(args.model) else None
    labels = args.labels or (None if pretrained else labels_file_for(args.model))
    stored = _stored_class_names(args.model) if labels is None and not pretrained else None
    if stored and len(stored) == model.output_shape[-1]:
        names = stored
    else:
        names = find_labels(None, labels, model.output_shape[-1], pretrained=pretrained)
    results = predict_files(model, args.videos, args.top_k, names, args.num_clips,
                            args.num_crops, args.decoder)
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0 if all("error" not in r for r in results) else 1
