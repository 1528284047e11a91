"""SqueezeTime: a mobile video network that squeezes time into the channels.

Zhai, Li, Tang, Chen, Wang, "No Time to Waste: Squeeze Time into Channel for Mobile Video
Understanding", arXiv 2405.08344 (2024); official code xinghaochen/SqueezeTime
(mmaction/models/backbones/SqueezeTime.py, heads/i2d_head.py), Apache-2.0. The network is
built exactly as there (ResNet-50 layout, depth 50, the released configuration):

- the clip (batch, T, H, W, 3) is normalised, then its frames stacked along the channels
  colour-major (channel c*T + t: PyTorch's view(N, 3*T, H, W) of an (N, 3, T, H, W)
  clip), so the stem takes 3*T channels and every later layer runs once per clip;
- stem: 5x5 conv stride 2 (padding 2, no bias) + BN + ReLU, 3x3 max-pool stride 2
  (padding 1);
- 4 stages of (3, 4, 6, 3) bottlenecks, widths (64, 128, 256, 512) x 4. A stage with
  stride 2 (stages 2-4) starts with `downsample`: a 2x2 depthwise conv stride 2 WITH bias
  + BN on the block input, before both branches. The 1x1 projection shortcut (+ BN, no
  stride) exists only where the width changes (each stage's first block);
- bottleneck: conv1 1x1 + BN + ReLU -> CTL + BN + ReLU -> conv3 1x1 + BN, + shortcut,
  ReLU;
- CTL (Channel-Time Learning, the publisher's class `Conv2d`, in the 3x3 slot) on x:
    alpha = sigmoid(W2 ReLU(BN(W1 GAP(x))))            (param_conv, 1x1 convs, no bias)
    temporal = W_t (alpha * x)                           (temporal_conv: 1x1, no bias)
    spatial  = short_conv(x) * sigmoid(c3(ReLU(BN(c7(ReLU(BN(c0(alpha * x))) + E)))))
               (IOI: short_conv 3x3 C->C bias; c0 3x3 C->16, c7 7x7 16->16, c3 3x3 16->C,
                all with bias; E the (P, P, 16) position embedding, resized bilinearly
                with align_corners=True when the map is not P x P)
    CTL(x) = temporal + spatial;
- head (I2DHead): global average pool, dropout 0.5, fc 2048 -> classes.

BatchNorm eps 1e-5 (PyTorch's default). Layer names follow the publisher's module paths
("layer2.0.conv2.spatial_conv.glo_conv.0" -> layer "layer2_0_conv2_spatial_conv_glo_conv_0")
so keras_tin/weights/layouts_squeezetime.py maps checkpoints by name.

The weights depend on T: the stem has 3*T input channels (48 for the released 16-frame
models). A checkpoint for another T is refused, naming both.
"""

import keras

from keras_tin.applications.blocks import batch_norm
from keras_tin.applications.video_model import check_video_args
from keras_tin.applications.video_model import clip_input
from keras_tin.applications.video_model import finish_model
from keras_tin.applications.video_model import resolve_normalization
from keras_tin.layers import squeezetime as st_layers
from keras_tin.layers.temporal_interlace import positive_int

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_STRIDES = (1, 2, 2, 2)  # the publisher's spatial_stride
# The released configs' pos_dim (configs/recognition/SqueezeTime/*.py) for 224 px
# input; the backbone class default is (64, 32, 16, 8).
POS_DIM = (56, 28, 14, 7)
EXPANSION = 4
GATE_CHANNELS = 16  # the IOI branch's hidden width
RELEASED_FRAMES = 16


class _Init:
    """kaiming_normal_(mode="fan_out", relu) for every conv, as the publisher (L274-281),
    each layer with a seed of its own (derived from `seed`), so seeded builds repeat."""

    def __init__(self, seed):
        self.seed = seed
        self.count = 0

    def conv(self):
        self.count += 1
        seed = None if self.seed is None else self.seed * 100003 + self.count
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal",
                                                  seed=seed)

    def next_seed(self):
        self.count += 1
        return None if self.seed is None else self.seed * 100003 + self.count


def _conv(filters, kernel_size, name, init, use_bias=False, strides=1, padding="same"):
    return keras.layers.Conv2D(filters, kernel_size, strides, padding=padding,
                               use_bias=use_bias, kernel_initializer=init.conv(), name=name)


def channel_time_learning(x, pos_dim, name, init):
    """The CTL block (publisher's `Conv2d` with kernel_size 1, stride unused)."""
    channels = x.shape[-1]
    relu = keras.layers.ReLU
    # param_conv: temporal importance alpha (batch, 1, 1, C)
    a = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_param_pool")(x)
    a = _conv(channels, 1, f"{name}_param_conv_1", init)(a)
    a = relu(name=f"{name}_param_relu")(batch_norm(f"{name}_param_conv_2")(a))
    a = _conv(channels, 1, f"{name}_param_conv_4", init)(a)
    alpha = keras.layers.Activation("sigmoid", name=f"{name}_param_sigmoid")(a)
    scaled = st_layers.ChannelTimeGate(name=f"{name}_scale")([x, alpha])
    temporal = _conv(channels, 1, f"{name}_temporal_conv", init)(scaled)
    # spatial_conv (IOI): short_conv on the unscaled x, gated by the glo_conv path
    prefix = f"{name}_spatial_conv"
    short = _conv(channels, 3, f"{prefix}_short_conv", init, use_bias=True)(x)
    g = _conv(GATE_CHANNELS, 3, f"{prefix}_glo_conv_0", init, use_bias=True)(scaled)
    g = relu(name=f"{prefix}_glo_relu_2")(batch_norm(f"{prefix}_glo_conv_1")(g))
    g = st_layers.PositionEmbedding2D(pos_dim, seed=init.next_seed(),
                                      name=f"{prefix}_pos_embed")(g)
    g = _conv(GATE_CHANNELS, 7, f"{prefix}_glo_conv_3", init, use_bias=True)(g)
    g = relu(name=f"{prefix}_glo_relu_5")(batch_norm(f"{prefix}_glo_conv_4")(g))
    g = _conv(channels, 3, f"{prefix}_glo_conv_6", init, use_bias=True)(g)
    g = keras.layers.Activation("sigmoid", name=f"{prefix}_glo_sigmoid")(g)
    spatial = st_layers.ChannelTimeGate(name=f"{prefix}_gate")([short, g])
    return keras.layers.Add(name=f"{name}_add")([temporal, spatial])


def bottleneck(x, planes, strides, pos_dim, name, init):
    """The publisher's Bottleneck (L163-214): downsample, conv1, CTL, conv3, shortcut."""
    if strides != 1:
        x = keras.layers.DepthwiseConv2D(2, strides, padding="valid", use_bias=True,
                                         depthwise_initializer=init.conv(),
                                         name=f"{name}_downsample_0")(x)
        x = batch_norm(f"{name}_downsample_1")(x)
    out = _conv(planes, 1, f"{name}_conv1", init)(x)
    out = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(out))
    out = channel_time_learning(out, pos_dim, f"{name}_conv2", init)
    out = keras.layers.ReLU(name=f"{name}_relu2")(batch_norm(f"{name}_bn2")(out))
    out = _conv(planes * EXPANSION, 1, f"{name}_conv3", init)(out)
    out = batch_norm(f"{name}_bn3")(out)
    shortcut = x
    if x.shape[-1] != planes * EXPANSION:
        shortcut = _conv(planes * EXPANSION, 1, f"{name}_shortcut_conv_0", init)(x)
        shortcut = batch_norm(f"{name}_shortcut_conv_1")(shortcut)
    out = keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def _check_pos_dim(pos_dim):
    try:
        values = tuple(pos_dim)
    except TypeError:
        values = ()
    if len(values) != 4:
        raise ValueError(f"pos_dim must be 4 positive integers, one per stage (the released "
                         f"models: {POS_DIM}). Received: pos_dim={pos_dim!r}")
    return tuple(positive_int(p, "pos_dim") for p in values)


def _check_record_frames(weights, frames):
    """A manifest checkpoint for another T is refused before anything is downloaded."""
    if isinstance(weights, str):
        from keras_tin.weights import registry
        if registry.is_pretrained_name(weights):
            record = registry.get_record(weights)
            if record["frames"] and record["frames"] != frames:
                raise ValueError(
                    f"'{weights}' is a SqueezeTime checkpoint for T={record['frames']} frames "
                    f"(its stem takes {3 * record['frames']} = 3 x {record['frames']} input "
                    f"channels) but the model is built with frames={frames} "
                    f"({3 * frames} channels); SqueezeTime's weights depend on T: build it "
                    f"with frames={record['frames']}.")


def SqueezeTime(frames=RELEASED_FRAMES, include_top=True, weights=None, input_tensor=None,
                input_shape=None, pooling=None, classes=400, classifier_activation="softmax",
                dropout_rate=0.5, normalization="auto", pos_dim=POS_DIM, base_filters=64,
                stage_blocks=STAGE_BLOCKS, name=None, seed=None):
    """Builds SqueezeTime (the publisher's depth-50 network).

    Args:
        frames: frames per clip, T (16 in every released checkpoint). The stem takes 3*T
            channels, so weights are specific to T.
        include_top: whether to include the classifier (global average pool, dropout, fc).
        weights: None, a pretrained name from keras_tin.weights (e.g.
            "squeezetime_16f_kinetics400"), or a local file (.weights.h5, .keras, or the
            publisher's PyTorch .pth: an mmaction2 checkpoint with backbone.net.* and
            cls_head.fc_cls.* keys).
        input_tensor: optional Keras tensor (batch, frames, H, W, 3) to build on.
        input_shape: (frames, H, W, 3) or (H, W, 3); default (frames, 224, 224, 3). H and
            W must be fixed (the position embeddings are resized to the feature maps).
        pooling: with include_top=False: None gives the last feature map
            (batch, h, w, 2048); "avg" / "max" give (batch, 2048).
        classes: number of classes.
        classifier_activation: activation of the output (None for logits).
        dropout_rate: dropout before the classifier (0.5 in the published head).
        normalization: "imagenet" (mean/std on 0-255 RGB, the released models'), another
            preset of keras_tin.applications.video_model, or None when the caller
            normalises. "auto": the manifest record's when `weights` names one, else
            "imagenet".
        pos_dim: the position embeddings' size per stage; (56, 28, 14, 7) in every
            released checkpoint (the sizes of the stages' maps at 224 px).
        base_filters: width of the stem and stage 1 (64 in the publisher's network;
            smaller values build narrow networks for tests). The stages are
            base_filters x (1, 2, 4, 8), expanded 4x.
        stage_blocks: bottlenecks per stage: (3, 4, 6, 3), the publisher's depth 50 (every
            released model; its generate_model also defines depth 101 (3, 4, 23, 3), 152
            (3, 8, 36, 3) and 200 (3, 24, 36, 3)). Fewer blocks build small networks for
            tests.
        name: model name (default "squeezetime").
        seed: seed of the initializers (None: unseeded).

    Returns:
        A keras.Model on clips of shape (batch, frames, H, W, 3), RGB in [0, 255].
    """
    normalization = resolve_normalization(normalization, weights)
    frames, classes = check_video_args("squeezetime", frames, include_top, pooling, classes,
                                       input_shape, normalization, kinds=("squeezetime",))
    pos_dim = _check_pos_dim(pos_dim)
    base_filters = positive_int(base_filters, "base_filters")
    try:
        stage_blocks = tuple(positive_int(b, "stage_blocks") for b in stage_blocks)
    except TypeError:
        stage_blocks = ()
    if len(stage_blocks) != 4:
        raise ValueError(f"stage_blocks must be 4 positive integers (the publisher's depth "
                         f"50: {STAGE_BLOCKS}). Received: stage_blocks={stage_blocks!r}")
    shape = (frames, 224, 224, 3) if input_shape is None else (frames,) + tuple(input_shape)[-3:]
    if input_tensor is None and (shape[1] is None or shape[2] is None):
        raise ValueError(f"SqueezeTime needs a fixed height and width (its position "
                         f"embeddings are resized to the feature maps once). Received: "
                         f"input_shape={input_shape}")
    _check_record_frames(weights, frames)
    init = _Init(seed)

    inputs, x = clip_input(frames, input_tensor, input_shape, normalization)
    x = st_layers.TimeIntoChannels(frames, name="time_into_channels")(x)  # (B, H, W, 3T)
    x = keras.layers.ZeroPadding2D(2, name="conv1_pad")(x)  # PyTorch's padding=2
    x = _conv(base_filters, 5, "conv1", init, strides=2, padding="valid")(x)
    x = keras.layers.ReLU(name="relu")(batch_norm("bn1")(x))
    # Max-pool padding 1: zeros equal PyTorch's -inf padding after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="maxpool")(x)
    for stage, (blocks, stride) in enumerate(zip(stage_blocks, STAGE_STRIDES)):
        planes = base_filters * 2 ** stage
        for b in range(blocks):
            x = bottleneck(x, planes, stride if b == 0 else 1, pos_dim[stage],
                           f"layer{stage + 1}_{b}", init)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, seed=init.next_seed(), name="dropout")(x)
        x = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.01, seed=init.next_seed()), name="fc")(x)  # I2DHead init_std 0.01
        x = keras.layers.Activation(classifier_activation, dtype="float32",
                                    name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return finish_model(inputs, x, name or "squeezetime", weights, partial_bn=False)
