"""One builder for temporal ResNets: TIN, TSM, TSN, ... on ResNet-18/34/50/101/152.

PyTorch-style ResNet (torchvision v1.5: stride on the 3x3 conv, bias-free convs,
BatchNorm eps 1e-5), so the published PyTorch checkpoints convert exactly. The
temporal module sits in every block of stages 1-4, on the residual branch, in
front of the first conv; the shortcut sees the un-shifted input. Frames are
folded into the batch inside the model; the head averages per-frame logits.

Where a module sits is declared by its ModuleSpec in keras_tin.applications.temporal_modules
(placements before_conv1, after_conv1, conv2, after_bn3, after_block, after_stage, head;
stem and stage-stride rules): the block builders below call those hook points, so a new
temporal kind is one layer file plus one registry line.

TSM on a network whose third stage has 23 or more blocks (ResNet-101) shifts only every
other block of every stage (blocks 0, 2, 4, ...): the published TSM code does this
(MIT temporal-shift-module ops/temporal_shift.py make_temporal_shift, n_round = 2; mmaction2
ResNetTSM.make_temporal_shift), so 18 of ResNet-101's 33 blocks shift. TIN keeps a module
in every block at every depth (the official TIN code never changes n_round).

Non-local blocks (non_local="embedded_gaussian" / "dot_product" / "gaussian") follow
mmaction2's non-local TSM (ResNetTSM non_local / non_local_cfg with sub_sample=True,
use_scale=False and a BN3d after conv_out; OpenMMLab mmcv NonLocal3d): a chosen residual
block's output x (after its ReLU) becomes x + BN(conv_out(attention(theta(x), phi(x), g(x)))),
attention over the T*H*W positions of each clip, keys and values max-pooled 2x2 in space,
theta / phi / g 1x1 convs to C/2 channels with bias (gaussian: no theta / phi convs, the
attention compares the features x themselves), conv_out 1x1 back to C channels without
bias. The BN's gamma starts at zero, so a fresh block is the identity.

ECA channel attention (channel_attention="eca") follows the official ECA-Net ResNets
(BangguWu/ECANet models/eca_resnet.py): in every block, after the branch's last BN (bn3 of a
bottleneck, bn2 of a basic block) and before the residual add, x * sigmoid(Conv1d_k(GAP(x)))
with the 1-D convolution across channels (keras_tin.layers.eca). The kernel size k is fixed
per stage; the defaults are those of the released ImageNet checkpoints (ECA_KERNEL_SIZES).
"""

import numbers

import keras

from keras_tin.applications import blocks
from keras_tin.applications import preact_block  # noqa: F401 (registers block='preact')
from keras_tin.applications import res2net_block  # noqa: F401 (registers block='res2net')
from keras_tin.applications import temporal_modules
from keras_tin.applications.video_model import check_video_args
from keras_tin.applications.video_model import clip_input
from keras_tin.applications.video_model import finish_model
from keras_tin.applications.video_model import resolve_normalization
from keras_tin.applications.video_model import video_head
from keras_tin.layers.eca import check_kernel_size
from keras_tin.layers.non_local import check_mode
from keras_tin.layers.temporal_interlace import positive_int

DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# mmaction2's non-local TSM-R50 configs: blocks 0, 2 of layer2 and 0, 2, 4 of layer3.
DEFAULT_NON_LOCAL_BLOCKS = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))
CHANNEL_ATTENTIONS = (None, "eca")
# Per-stage ECA kernel sizes of the released ECA-ResNet ImageNet checkpoints (BangguWu/ECANet
# README: eca_resnet18_k3577, eca_resnet34_k3357, eca_resnet50_k3557, eca_resnet101_k3357).
# eca_resnet152_k3357 (ECA-Net152 in the same README).
ECA_KERNEL_SIZES = {18: (3, 5, 7, 7), 34: (3, 3, 5, 7), 50: (3, 5, 5, 7), 101: (3, 3, 5, 7),
                    152: (3, 3, 5, 7)}
POOLINGS = (None, "avg", "max", "tcp")


def module_every(temporal, stage_blocks):
    """1, or 2 when only every other block of each stage carries the temporal module
    (TSM with a third stage of 23+ blocks: the published code's n_round). The rule is the
    registered ModuleSpec's `module_every`."""
    return temporal_modules.get(temporal).module_every(stage_blocks)


def non_local_placement(non_local, non_local_blocks, stage_blocks):
    """Per-stage tuples of 0/1 (one entry per block, padded with 0), or None without
    non-local blocks. Raises ValueError quoting a bad argument."""
    if non_local is None:
        if non_local_blocks is not None:
            raise ValueError("non_local_blocks needs non_local (a mode such as "
                             f"'embedded_gaussian'). Received: non_local=None, "
                             f"non_local_blocks={non_local_blocks!r}")
        return None
    check_mode(non_local, "non_local")
    if non_local_blocks is None:  # the published pattern, cut to shallower stages
        return tuple(tuple(stage[:n]) + (0,) * (n - len(stage[:n]))
                     for stage, n in zip(DEFAULT_NON_LOCAL_BLOCKS, stage_blocks))
    problem = None
    if (not isinstance(non_local_blocks, (list, tuple))
            or len(non_local_blocks) != len(stage_blocks)):
        problem = f"one entry per stage ({len(stage_blocks)} stages)"
    elif not all(isinstance(stage, (list, tuple)) for stage in non_local_blocks):
        problem = "a tuple of 0/1 per stage"
    elif not all(isinstance(v, numbers.Integral) and v in (0, 1)
                 for stage in non_local_blocks for v in stage):
        problem = "entries 0 or 1"
    elif any(len(stage) > n for stage, n in zip(non_local_blocks, stage_blocks)):
        problem = f"no more entries per stage than the stage has blocks {tuple(stage_blocks)}"
    if problem:
        raise ValueError(f"non_local_blocks must have {problem}, e.g. "
                         f"{DEFAULT_NON_LOCAL_BLOCKS}. Received: "
                         f"non_local_blocks={non_local_blocks!r}")
    return tuple(tuple(int(v) for v in stage) + (0,) * (n - len(stage))
                 for stage, n in zip(non_local_blocks, stage_blocks))


def eca_kernel_sizes_for(channel_attention, eca_kernel_sizes, depth):
    """The per-stage ECA kernel sizes (a tuple of 4 odd positive ints), or None without
    channel attention. Raises ValueError quoting a bad argument."""
    if channel_attention not in CHANNEL_ATTENTIONS:
        raise ValueError(f"channel_attention must be one of {CHANNEL_ATTENTIONS}. Received: "
                         f"channel_attention={channel_attention!r}")
    if channel_attention is None:
        if eca_kernel_sizes is not None:
            raise ValueError("eca_kernel_sizes needs channel_attention='eca'. Received: "
                             f"channel_attention=None, eca_kernel_sizes={eca_kernel_sizes!r}")
        return None
    if eca_kernel_sizes is None:
        return ECA_KERNEL_SIZES[depth]
    if (not isinstance(eca_kernel_sizes, (list, tuple))
            or len(eca_kernel_sizes) != len(DEPTHS[depth][1])):
        raise ValueError(f"eca_kernel_sizes must have one odd kernel size per stage "
                         f"({len(DEPTHS[depth][1])} stages), e.g. {ECA_KERNEL_SIZES[depth]} "
                         f"(the released ECA-ResNet-{depth}). Received: "
                         f"eca_kernel_sizes={eca_kernel_sizes!r}")
    for size in eca_kernel_sizes:
        try:
            check_kernel_size(size, "eca_kernel_sizes")
        except ValueError:
            raise ValueError(f"eca_kernel_sizes must be odd positive integers, e.g. "
                             f"{ECA_KERNEL_SIZES[depth]}. Received: "
                             f"eca_kernel_sizes={eca_kernel_sizes!r}") from None
    return tuple(int(size) for size in eca_kernel_sizes)


def block_kind_for(spec, depth, block=None):
    """The residual block kind a network of this temporal kind and depth is built from,
    refusing a kind the depth or the module cannot take (quoting it)."""
    default = DEPTHS[depth][0]
    kind = block or spec.block or spec.default_blocks.get(depth) or default
    blocks.get_block(kind)  # unknown kinds are refused with the registered names
    if default == "basic" and kind != "basic":
        raise ValueError(f"ResNet-{depth} is built from basic blocks; block={kind!r} needs "
                         f"depth 50 or 101.")
    if spec.block and kind != spec.block:
        raise ValueError(f"temporal={spec.name!r} sits in {spec.block!r} blocks. Received: "
                         f"block={block!r}")
    if spec.depths and depth not in spec.depths:
        raise ValueError(f"temporal={spec.name!r} is defined for depth {spec.depths}. "
                         f"Received: depth={depth!r}")
    return kind


def head_for(spec, pooling, frames):
    """The "head" module replacing average pooling (the kind's own, e.g. "tcp", or the TCP
    head for pooling="tcp"), or None; refuses a pooling the head contradicts, and (before
    anything is built) a frame count the TCP head cannot take."""
    head = None
    if "head" in spec.placements:
        if pooling not in (None, "tcp"):
            raise ValueError(f"temporal={spec.name!r} pools with its own head; pooling must "
                             f"be None. Received: pooling={pooling!r}")
        head = spec
    elif pooling == "tcp":
        head = temporal_modules.TCP_HEAD
    if head is not None and head.build is temporal_modules.TCP_HEAD.build:
        temporal_modules.tcp_layers.check_frames(frames)
    return head


def TemporalResNet(temporal="tin", depth=50, frames=8, include_top=True, weights=None,
                   input_tensor=None, input_shape=None, pooling=None, classes=400,
                   classifier_activation="softmax", dropout_rate=0.5, partial_bn=False,
                   normalization="auto", implementation="auto", fuse=True,
                   base_filters=64, non_local=None, non_local_blocks=None, block=None,
                   channel_attention=None, eca_kernel_sizes=None, name=None):
    """Builds a temporal ResNet; the public constructors below fix temporal and depth.

    Args:
        temporal: "tin", "tsm" or "tsn" (no temporal module), or any kind registered in
            keras_tin.applications.temporal_modules (its ModuleSpec says where it sits).
        depth: 18, 34, 50, 101 or 152.
        frames: frames per clip (8 in every released checkpoint).
        include_top: whether to include the per-frame classifier and frame averaging.
        weights: None, a pretrained name from keras_tin.weights, or a local file
            (.weights.h5, .keras, or a PyTorch .pth/.pt checkpoint).
        input_tensor: optional Keras tensor (batch, frames, H, W, 3) to build on.
        input_shape: (frames, H, W, 3) or (H, W, 3); default (frames, 224, 224, 3).
        pooling: with include_top=False: None gives per-frame feature maps
            (batch, frames, h, w, C); "avg"/"max" give (batch, C) pooled over space and time.
            "tcp" (with or without the top): Temporal-attentive Covariance Pooling
            (TCPNet, keras_tin.layers.tcp) replaces average pooling and the frame
            consensus, with the last stage at stride 1 as in TCPNet: the classifier sees
            (batch, 8256) clip features, which the model outputs without a top. Any
            temporal kind takes it (e.g. TSM + TCP); temporal="tcp" is TSN + TCP. Frames
            must be 4k or 4k+1 (the temporal conv's kernel frames//2 + 1 must be odd).
        classes: number of classes.
        classifier_activation: activation after the frame consensus (None for logits).
        dropout_rate: dropout before the classifier.
        partial_bn: freeze every BatchNormalization but the first (TSN's partial BN).
        normalization: "imagenet" (mean/std on 0-255 RGB), "inception" (x/127.5 - 1), or
            None when the caller normalises. The model then takes RGB in [0, 255]. The
            default "auto" is the manifest record's normalisation when `weights` names a
            pretrained checkpoint (the mmaction2 v1.0 TIN files were trained with
            x/127.5 - 1), else "imagenet".
        implementation: TIN interlace implementation ("auto", "portable", "custom_op").
        fuse: compute the temporal module through its delta into the first conv.
        base_filters: width of the stem and stage 1 (64 in the standard ResNets; the
            demo uses narrower networks). Must be a multiple of 16 for TIN.
        non_local: None, or "embedded_gaussian", "dot_product" or "gaussian": non-local
            blocks after chosen residual blocks, as mmaction2's non-local TSM
            (NL3DWrapper + mmcv NonLocal3d, sub_sample=True, use_scale=False, BN3d). Fresh
            blocks are the identity (their BatchNormalization's gamma is 0).
        non_local_blocks: with non_local: per stage a tuple of 0/1 per block (a tuple may
            be shorter than its stage; missing blocks get none), like mmaction2's
            `non_local`. Default: the published ((0, 0, 0), (1, 0, 1, 0),
            (1, 0, 1, 0, 1, 0), (0, 0, 0)), cut to each stage's length for ResNet-18.
        block: the residual block kind of depth 50/101/152: None (the temporal kind's own,
            ModuleSpec.block / default_blocks; "bottleneck" for TIN/TSM/TSN; "preact" for
            TCP at depth 152), "bottleneck", "preact" (pre-activation bottlenecks with an
            input BN bn_data and a final BN bn2, BN eps 2e-5: TCPNet's ResNet-152,
            keras_tin.applications.preact_block), or "res2net"
            (Res2Net-26w-4s, e.g. `TemporalResNet("tsn", 50, block="res2net")` is the
            Res2Net-50 image backbone applied per frame). Depth 18/34 use "basic".
        channel_attention: None, or "eca": ECA channel attention in every block, after
            the branch's last BN and before the residual add (ECA-Net, BangguWu/ECANet),
            with any temporal kind and non_local. `weights=` then takes the official
            ECA-ResNet ImageNet checkpoints ({'state_dict': {'module.conv1.weight', ...,
            'module.layer1.0.eca.conv.weight', ..., 'module.fc.weight'}}) for the
            backbone, and their classifier when the class count matches. A plain
            torchvision ResNet also loads, leaving the ECA kernels at their
            initialisation (announced).
        eca_kernel_sizes: with channel_attention="eca": the odd 1-D kernel size of each
            of the 4 stages. Default: the released checkpoints' (3, 5, 7, 7) for depth 18,
            (3, 3, 5, 7) for 34, (3, 5, 5, 7) for 50, (3, 3, 5, 7) for 101.
        name: model name.

    Returns:
        A keras.Model on clips of shape (batch, frames, H, W, 3).
    """
    spec = temporal_modules.get(temporal)  # the error lists the registered kinds
    normalization = resolve_normalization(normalization, weights)
    frames, classes = check_video_args(temporal, frames, include_top, pooling, classes,
                                       input_shape, normalization,
                                       kinds=temporal_modules.names(), poolings=POOLINGS)
    head_spec = head_for(spec, pooling, frames)
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}. Received: depth={depth!r}")
    base_filters = positive_int(base_filters, "base_filters")
    block_kind, stage_blocks = DEPTHS[depth]
    block_kind = block_kind_for(spec, depth, block)
    block_fn = blocks.get_block(block_kind)
    every = spec.module_every(stage_blocks)
    placement = non_local_placement(non_local, non_local_blocks, stage_blocks)
    eca_sizes = eca_kernel_sizes_for(channel_attention, eca_kernel_sizes, depth)
    options = {"implementation": implementation, "non_local": non_local,
               "eca_kernel_sizes": eca_sizes}
    stage_strides = spec.stage_strides
    if head_spec is temporal_modules.TCP_HEAD:  # TCPNet's layer4 keeps stride 1
        stage_strides = tuple(stage_strides[:-1]) + (1,)
    inputs, x = clip_input(frames, input_tensor, input_shape, normalization)
    preact_eps = blocks.PREACTIVATION.get(block_kind)
    bn_eps = {} if preact_eps is None else {"epsilon": preact_eps}
    if preact_eps is not None:  # the pre-activation network's BN on the input
        x = blocks.batch_norm("bn_data", **bn_eps)(x)
    x = blocks.conv(base_filters, 7, 2, "conv1")(x)
    x = keras.layers.ReLU()(blocks.batch_norm("bn1", **bn_eps)(x))
    if spec.stem_maxpool:
        x = keras.layers.ZeroPadding2D(1)(x)  # zero padding == -inf padding after ReLU
        x = keras.layers.MaxPooling2D(3, 2, name="maxpool")(x)
    for stage, count in enumerate(stage_blocks):
        planes = base_filters * 2 ** stage
        for b in range(count):
            block_name = f"layer{stage + 1}_{b}"
            strides = stage_strides[stage] if b == 0 else 1
            specs = ((spec,) if b % every == 0 else ()) + (
                (temporal_modules.ECA,) if eca_sizes else ()) + (
                (temporal_modules.NON_LOCAL,) if placement and placement[stage][b] else ())
            x = block_fn(x, planes, strides, block_name,
                         blocks.Hooks(specs, frames, block_name, stage, b, options), fuse)
        x = blocks.Hooks((spec,), frames, f"layer{stage + 1}", stage, None,
                            options).apply("after_stage", x)
    if preact_eps is not None:  # the last pre-activation
        x = keras.layers.ReLU()(blocks.batch_norm("bn2", **bn_eps)(x))
    head = blocks.Hooks((head_spec,) if head_spec else (), frames, "head", None, None,
                        options).build("head", x.shape[-1])
    x = video_head(x, frames, include_top, pooling, classes, classifier_activation,
                   dropout_rate, pool=head[0][1] if head else None)
    default_name = (f"{temporal}_res2net{depth}" if block_kind == "res2net"
                    else f"{temporal}_resnet{depth}")
    return finish_model(inputs, x, name or default_name, weights, partial_bn)


def _constructor(temporal, depth, display=None, backbone="ResNet", block=None):
    def build(frames=8, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=400, classifier_activation="softmax", dropout_rate=0.5,
              name=None, **kwargs):
        if block is not None:
            kwargs.setdefault("block", block)
        return TemporalResNet(temporal, depth, frames=frames, include_top=include_top,
                              weights=weights, input_tensor=input_tensor,
                              input_shape=input_shape, pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation,
                              dropout_rate=dropout_rate, name=name, **kwargs)
    display = display or temporal.upper()
    build.__name__ = f"{display}{backbone}{depth}"
    build.__qualname__ = build.__name__
    build.__doc__ = (f"{display}-{backbone}-{depth}: `TemporalResNet(temporal="
                     f"'{temporal}', depth={depth}, ...)`; see TemporalResNet for arguments.")
    return build


TINResNet18 = _constructor("tin", 18)
TINResNet34 = _constructor("tin", 34)
TINResNet50 = _constructor("tin", 50)
TINResNet101 = _constructor("tin", 101)
TSMResNet18 = _constructor("tsm", 18)
TSMResNet34 = _constructor("tsm", 34)
TSMResNet50 = _constructor("tsm", 50)
TSMResNet101 = _constructor("tsm", 101)
TSNResNet18 = _constructor("tsn", 18)
TSNResNet34 = _constructor("tsn", 34)
TSNResNet50 = _constructor("tsn", 50)
TSNResNet101 = _constructor("tsn", 101)
TSNResNet152 = _constructor("tsn", 152)
TAda2DResNet50 = _constructor("tada2d", 50, display="TAda2D")
TEARes2Net50 = _constructor("tea", 50, display="TEA", backbone="Res2Net")
STMResNet50 = _constructor("stm", 50, display="STM")
# MSNet (MotionSqueeze): TSM + the MS module after layer2; the paper's R50, the release's R18.
MSNetResNet18 = _constructor("msnet", 18, display="MSNet")
MSNetResNet50 = _constructor("msnet", 50, display="MSNet")
# TCPNet: TSN with the TCP head (layer4 stride 1); pooling="tcp" puts it on any kind.
TCPResNet50 = _constructor("tcp", 50, display="TCP")
TCPResNet152 = _constructor("tcp", 152, display="TCP")
# The Res2Net-50 (26w x 4s) image backbone per frame; frames=1 is architecture "res2net50".
TSNRes2Net50 = _constructor("tsn", 50, display="TSN", backbone="Res2Net", block="res2net")
