"""keras-tin convert: a PyTorch checkpoint of any zoo model -> .weights.h5 (see keras_tin.weights)."""


def add_arguments(parser):
    parser.add_argument("input", help="PyTorch checkpoint (.pth / .pt)")
    parser.add_argument("output", help="Keras weights file to write (.weights.h5)")
    parser.add_argument("--arch", required=True,
                        help="architecture name: tin_resnet50, tsm_resnet101, tsn_resnet18, "
                             "tsm_mobilenetv2, tada2d_resnet50, tea_res2net50, stm_resnet50, "
                             "tsn_eca_resnet50, res2net50, ...")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--classes", type=int, default=None,
                        help="classifier size (default: the checkpoint's)")
    parser.add_argument("--layout", default=None,
                        help="key layout (default: detected from the keys; TIN/TSM/TSN: "
                             "openmmlab, authors or torchvision; online: MIT's online demo "
                             "checkpoint, with --arch tsm_mobilenetv2, builds the online model)")
    parser.add_argument("--non-local", choices=("embedded_gaussian", "dot_product", "gaussian"),
                        default=None, help="non-local mode of a non-local TSM checkpoint")
    parser.add_argument("--use-torch", action="store_true",
                        help="read the checkpoint with torch.load(weights_only=True)")


def run(args):
    import pickle

    from keras_tin.weights.convert import convert_checkpoint
    from keras_tin.weights.pth_reader import CheckpointError

    try:
        model = convert_checkpoint(args.input, args.output, args.arch, frames=args.frames,
                                   classes=args.classes, layout=args.layout,
                                   use_torch=args.use_torch, non_local=args.non_local)
    # CheckpointError: a refused, malformed or too large checkpoint (its message is one
    # line); ImportError: --use-torch without a (recent enough) torch.
    except (CheckpointError, ImportError, ValueError, OSError, pickle.UnpicklingError) as e:
        print(f"keras-tin convert: error: {e}")
        return 1
    print(f"Wrote {args.output} ({model.name}, {model.count_params():,} parameters).")
    return 0
