"""Video ResNets with basic blocks: R3D-18, MC3-18, R(2+1)D-18 (torchvision
`torchvision/models/video/resnet.py`) and R(2+1)D-34 in its mmaction2 and VMZ / IG-65M
forms (Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
CVPR 2018). One builder, `VideoResNet`, takes a `Spec`; the named functions are specs.

The network (channels-last, clips (batch, frames, H, W, 3) of 0-255 RGB, normalised in the
model):
- stem: "3d" Conv3D (3, 7, 7) stride (1, 2, 2) + BN + ReLU (R3D, MC3), or "2plus1d":
  Conv3D (1, 7, 7) stride (1, 2, 2) to `stem_mid` channels + BN + ReLU + Conv3D (3, 1, 1) to
  64 + BN + ReLU (torchvision/VMZ: 45 channels; mmaction2: its formula, 83), then for
  mmaction2 a max-pool (1, 3, 3) stride (1, 2, 2) padding (0, 1, 1);
- four stages of basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2 in space and
  (except MC3's "notemporal" stages) in time, 16 -> 8 -> 4 -> 2 frames), each conv made as
  its stage's conv kind (blocks3d.CONV_KINDS); a 1x1x1 conv + BN shortcut (mmaction2: a
  factorised 1x1x1 pair, its Conv2plus1d with kernel 1) on the first block of stages 2-4;
- head: global average pool (time and space), dropout, fc.

Middle widths of the (2+1)D convs: torchvision computes one per block from (inplanes,
planes) and uses it for both convs ("block" rule: the first blocks of stages 2-4 have conv2
middle widths 230 / 460 / 921), VMZ and mmaction2 one per conv ("conv" rule: 288 / 576 /
1152). BN eps: 1e-5 (torchvision), 1e-3 everywhere (VMZ), 1e-3 except the BN inside the
factorised convs, which mmaction2 builds with its Conv2plus1d default BN3d (1e-5).
"""

import dataclasses

import keras

from keras_tin import layers as tin_layers
from keras_tin.applications.video3d import blocks3d
from keras_tin.applications.video_model import check_video_args
from keras_tin.applications.video_model import clip_input
from keras_tin.applications.video_model import finish_model
from keras_tin.layers.temporal_interlace import positive_int


@dataclasses.dataclass(frozen=True)
class Spec:
    """What tells the video ResNets apart (see the module docstring)."""
    name: str
    stem: str                     # "3d" or "2plus1d"
    convs: tuple                  # conv kind of each of the four stages
    blocks: tuple = (2, 2, 2, 2)
    stem_mid: int = 45            # middle width of a "2plus1d" stem
    mid_rule: str = "block"       # "block" (torchvision) or "conv" (VMZ, mmaction2)
    epsilon: float = 1e-5
    mid_epsilon: float = 1e-5     # BN between the spatial and temporal conv
    stem_pool: bool = False       # mmaction2's max-pool after the stem
    shortcut: str = "conv"        # "conv" (1x1x1 + BN) or "2plus1d" (mmaction2)
    image_size: int = 112
    normalization: str = "kinetics"
    dropout_rate: float = 0.0


SPECS = {
    "r3d_18": Spec("r3d_18", "3d", ("3d",) * 4),
    "mc3_18": Spec("mc3_18", "3d", ("3d",) + ("notemporal",) * 3),
    "r2plus1d_18": Spec("r2plus1d_18", "2plus1d", ("2plus1d",) * 4),
    "r2plus1d_34_mmaction2": Spec(
        "r2plus1d_34", "2plus1d", ("2plus1d",) * 4, (3, 4, 6, 3),
        stem_mid=blocks3d.middle_width(3, 64, (3, 7, 7)), mid_rule="conv", epsilon=1e-3,
        mid_epsilon=1e-5, stem_pool=True, shortcut="2plus1d", image_size=224,
        normalization="imagenet", dropout_rate=0.5),
    "r2plus1d_34_vmz": Spec(
        "r2plus1d_34_vmz", "2plus1d", ("2plus1d",) * 4, (3, 4, 6, 3), mid_rule="conv",
        epsilon=1e-3, mid_epsilon=1e-3),
}
R2PLUS1D_34_VARIANTS = {"mmaction2": "r2plus1d_34_mmaction2", "vmz": "r2plus1d_34_vmz"}
POOLINGS = (None, "avg", "max")


def _stem(x, spec, width, init):
    if spec.stem == "3d":
        x = blocks3d.conv3d(x, width, (3, 7, 7), (1, 2, 2), "stem_conv", init)
    else:
        mid = max(1, spec.stem_mid * width // 64)  # the publisher's at width 64
        x = blocks3d.conv_factorized(x, width, mid, (3, 7, 7), (1, 2, 2), "stem_conv",
                                     "stem_bn", init, spec.mid_epsilon)
    x = blocks3d.batch_norm(x, "stem_bn", spec.epsilon)
    x = blocks3d.relu(x, "stem_relu")
    if spec.stem_pool:  # after a ReLU, zero padding is the max-pool's -inf padding
        x = keras.layers.ZeroPadding3D((0, 1, 1), name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling3D((1, 3, 3), (1, 2, 2), name="stem_pool")(x)
    return x


def _shortcut(x, spec, kind, planes, stride, name, init):
    strides = blocks3d.shortcut_strides(kind, stride)
    if spec.shortcut == "2plus1d":
        mid = blocks3d.middle_width(x.shape[-1], planes, (3, 1, 1))
        y = blocks3d.conv_factorized(x, planes, mid, (1, 1, 1), strides, f"{name}_conv",
                                     f"{name}_bn", init, spec.mid_epsilon)
    else:
        y = blocks3d.conv3d(x, planes, (1, 1, 1), strides, f"{name}_conv", init)
    return blocks3d.batch_norm(y, f"{name}_bn", spec.epsilon)


def _basic_block(x, spec, kind, planes, stride, name, init):
    inplanes = x.shape[-1]
    mid1 = blocks3d.middle_width(inplanes, planes)
    mid2 = mid1 if spec.mid_rule == "block" else blocks3d.middle_width(planes, planes)
    if stride != 1 or inplanes != planes:
        shortcut = _shortcut(x, spec, kind, planes, stride, f"{name}_downsample", init)
    else:
        shortcut = x
    y = blocks3d.conv_of_kind(x, kind, planes, mid1, stride, f"{name}_conv1", f"{name}_bn1",
                              init, spec.mid_epsilon)
    y = blocks3d.batch_norm(y, f"{name}_bn1", spec.epsilon)
    y = blocks3d.relu(y, f"{name}_relu1")
    y = blocks3d.conv_of_kind(y, kind, planes, mid2, 1, f"{name}_conv2", f"{name}_bn2", init,
                              spec.mid_epsilon)
    y = blocks3d.batch_norm(y, f"{name}_bn2", spec.epsilon)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return blocks3d.relu(y, f"{name}_out")


def _head(x, include_top, pooling, classes, classifier_activation, dropout_rate, init):
    if include_top:
        x = keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Dense(classes, kernel_initializer=init.dense(), name="fc")(x)
        return keras.layers.Activation(classifier_activation, dtype="float32",
                                       name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling3D(name="max_pool")(x)
    return x


def _resolve_normalization(normalization, weights, spec):
    """"auto": the manifest record's normalisation for a record name, else the publisher's
    (spec.normalization)."""
    if normalization != "auto":
        return normalization
    if isinstance(weights, str):
        from keras_tin.weights import registry
        if registry.is_pretrained_name(weights):
            return registry.get_record(weights)["normalization"]
    return spec.normalization


def VideoResNet(spec, frames=16, input_shape=None, include_top=True, weights=None,
                classes=400, classifier_activation="softmax", pooling=None, dropout_rate=None,
                normalization="auto", name=None, seed=None, input_tensor=None,
                base_filters=64):
    """A video ResNet of basic blocks described by `spec` (a Spec or a key of SPECS).

    Args:
        spec: a Spec, or one of "r3d_18", "mc3_18", "r2plus1d_18", "r2plus1d_34_mmaction2",
            "r2plus1d_34_vmz".
        frames: frames per clip (any count; the published models use 8, 16 or 32).
        input_shape: (frames, H, W, 3) or (H, W, 3); default the publisher's size (112 px,
            224 for mmaction2). H, W may be None.
        include_top: the classifier (global average pool, dropout, fc).
        weights: None, a manifest record name (keras_tin.weights.list_pretrained()), or a
            local .pth / .weights.h5 / .keras file.
        classes: classifier size (with include_top).
        classifier_activation: activation of the classifier (None for logits).
        pooling: without the top: None (the (batch, t, h, w, 512) map), "avg" or "max".
        dropout_rate: before the fc; None: the publisher's (0, mmaction2 0.5).
        normalization: "auto" (the record's when `weights` names one, else the publisher's:
            "kinetics" for torchvision / VMZ, "imagenet" for mmaction2), one of
            keras_tin.applications.video_model.NORMALIZATIONS, or None (feed normalised
            clips).
        name: the model name (default: the spec's).
        seed: seeds the initialisers (an integer), for reproducible builds.
        input_tensor: an optional Keras tensor to build on.
        base_filters: width of the stem and stage 1 (64 in every published model; the
            stages have 1, 2, 4, 8 times it); smaller values make narrow test networks.
    """
    if isinstance(spec, str):
        if spec not in SPECS:
            raise ValueError(f"spec must be a Spec or one of {sorted(SPECS)}. "
                             f"Received: spec={spec!r}")
        spec = SPECS[spec]
    normalization = _resolve_normalization(normalization, weights, spec)
    frames, classes = check_video_args("video3d", frames, include_top, pooling, classes,
                                       input_shape, normalization, kinds=("video3d",),
                                       poolings=POOLINGS)
    if dropout_rate is None:
        dropout_rate = spec.dropout_rate
    if input_shape is None:
        input_shape = (frames, spec.image_size, spec.image_size, 3)
    base_filters = positive_int(base_filters, "base_filters")
    init = blocks3d.Initializers(seed)
    inputs, x = clip_input(frames, input_tensor, input_shape, normalization)
    x = tin_layers.UnfoldFrames(frames, name="unfold_frames")(x)  # (B, T, H, W, 3)
    x = _stem(x, spec, base_filters, init)
    for stage, (kind, count) in enumerate(zip(spec.convs, spec.blocks)):
        planes = base_filters * 2 ** stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            x = _basic_block(x, spec, kind, planes, stride, f"layer{stage + 1}_{index}", init)
    outputs = _head(x, include_top, pooling, classes, classifier_activation, dropout_rate,
                    init)
    return finish_model(inputs, outputs, name or spec.name, weights, partial_bn=False)


_DOC = """{title} ({source}).

    Keras-applications arguments as VideoResNet (frames, input_shape, include_top, weights,
    classes, classifier_activation, pooling, dropout_rate, normalization, name, seed,
    input_tensor, base_filters). {weights_note}
    """


def R2Plus1D18(frames=16, input_shape=None, include_top=True, weights=None, classes=400,
               classifier_activation="softmax", pooling=None, dropout_rate=None,
               normalization="auto", name=None, seed=None, input_tensor=None,
               base_filters=64):
    return VideoResNet("r2plus1d_18", frames, input_shape, include_top, weights, classes,
                       classifier_activation, pooling, dropout_rate, normalization, name,
                       seed, input_tensor, base_filters)


def R3D18(frames=16, input_shape=None, include_top=True, weights=None, classes=400,
          classifier_activation="softmax", pooling=None, dropout_rate=None,
          normalization="auto", name=None, seed=None, input_tensor=None,
          base_filters=64):
    return VideoResNet("r3d_18", frames, input_shape, include_top, weights, classes,
                       classifier_activation, pooling, dropout_rate, normalization, name,
                       seed, input_tensor, base_filters)


def MC3_18(frames=16, input_shape=None, include_top=True, weights=None, classes=400,
           classifier_activation="softmax", pooling=None, dropout_rate=None,
           normalization="auto", name=None, seed=None, input_tensor=None,
           base_filters=64):
    return VideoResNet("mc3_18", frames, input_shape, include_top, weights, classes,
                       classifier_activation, pooling, dropout_rate, normalization, name,
                       seed, input_tensor, base_filters)


def R2Plus1D34(frames=None, input_shape=None, include_top=True, weights=None, classes=400,
               classifier_activation="softmax", pooling=None, dropout_rate=None,
               normalization="auto", name=None, seed=None, input_tensor=None,
               variant="mmaction2", base_filters=64):
    if variant not in R2PLUS1D_34_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(R2PLUS1D_34_VARIANTS)}. "
                         f"Received: variant={variant!r}")
    if frames is None:
        frames = 8
    return VideoResNet(R2PLUS1D_34_VARIANTS[variant], frames, input_shape, include_top,
                       weights, classes, classifier_activation, pooling, dropout_rate,
                       normalization, name, seed, input_tensor, base_filters)


def R2Plus1D34VMZ(frames=None, input_shape=None, include_top=True, weights=None,
                  classes=400, classifier_activation="softmax", pooling=None,
                  dropout_rate=None, normalization="auto", name=None, seed=None,
                  input_tensor=None, base_filters=64):
    return R2Plus1D34(frames, input_shape, include_top, weights, classes,
                      classifier_activation, pooling, dropout_rate, normalization, name, seed,
                      input_tensor, variant="vmz", base_filters=base_filters)


R2Plus1D18.__doc__ = _DOC.format(
    title="R(2+1)D-18", source="torchvision r2plus1d_18: (2+1)D convs, middle width per block",
    weights_note='weights="r2plus1d_18_16f_kinetics400_torchvision": torchvision\'s '
                 'Kinetics-400 checkpoint (16 frames, 112 px, Kinetics mean/std).')
R3D18.__doc__ = _DOC.format(
    title="R3D-18", source="torchvision r3d_18: full 3x3x3 convs",
    weights_note='weights="r3d_18_16f_kinetics400_torchvision": torchvision\'s Kinetics-400 '
                 'checkpoint.')
MC3_18.__doc__ = _DOC.format(
    title="MC3-18", source="torchvision mc3_18: 3x3x3 convs in stage 1, (1, 3, 3) in 2-4",
    weights_note='weights="mc3_18_16f_kinetics400_torchvision": torchvision\'s Kinetics-400 '
                 'checkpoint.')
R2Plus1D34.__doc__ = _DOC.format(
    title="R(2+1)D-34", source='variant="mmaction2": mmaction2 ResNet2Plus1d (224 px, '
    'max-pool stem, factorised shortcut, BN eps 1e-3); variant="vmz": VMZ / IG-65M '
    '(ig65m-pytorch, 112 px, middle width per conv, BN eps 1e-3)',
    weights_note='frames defaults to 8. Weights: "r2plus1d_34_8f_kinetics400_mmaction2", '
                 '"r2plus1d_34_32f_kinetics400_mmaction2"; with variant="vmz" the IG-65M '
                 'records ("r2plus1d_34_vmz_*").')
R2Plus1D34VMZ.__doc__ = "R2Plus1D34(variant=\"vmz\"): the VMZ / IG-65M R(2+1)D-34."
