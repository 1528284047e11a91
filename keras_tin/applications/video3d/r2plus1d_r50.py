"""pytorchvideo's bottleneck R(2+1)D ResNet (R(2+1)D-50 of the PyTorchVideo model zoo).

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR
2018, in the form of facebookresearch/pytorchvideo `create_r2plus1d`
(pytorchvideo/models/r2plus1d.py; ZOO_SPEC.md section 9), which differs from torchvision's
R(2+1)D-18/34 (keras_tin.applications.video3d): bottleneck blocks whose middle conv is a
(2+1)D conv with the TEMPORAL conv first and no mid-channel expansion, and no max-pool:

- stem: Conv3D (1, 7, 7) stride (1, 2, 2) + BN + ReLU;
- res2..res5 (3, 4, 6, 3 blocks for depth 50; 101 and 152 as pytorchvideo), widths
  64-256, 128-512, 256-1024, 512-2048 (inner-outer); the first block of each stage has
  stride (temporal, spatial) (1, 2), (1, 2), (2, 2), (2, 2) on its (2+1)D conv and a 1x1x1
  shortcut conv + BN of that stride;
- a block: conv_a 1x1x1 + BN + ReLU -> conv_t (3, 1, 1) (temporal stride) + BN + ReLU ->
  conv_xy (1, 3, 3) (spatial stride) + BN + ReLU -> conv_c 1x1x1 + BN (gamma initialised to
  0, pytorchvideo's block_final_bn) -> + shortcut -> ReLU;
- head: AvgPool3D (4, 7, 7) stride 1, dropout 0.5, fc, the positions averaged.
At 16 x 224 x 224 (the published setting) the last map is 4 x 7 x 7: one pool position.
"""

import keras

from keras_tin.applications.video3d import factorized
from keras_tin.applications.video_model import NORMALIZATIONS
from keras_tin.applications.video_model import finish_model
from keras_tin.applications.video_model import resolve_normalization
from keras_tin.layers.temporal_interlace import positive_int

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
SPATIAL_STRIDES = (2, 2, 2, 2)
TEMPORAL_STRIDES = (1, 1, 2, 2)
HEAD_POOL = (4, 7, 7)


def _block(x, inner, out, strides, name, init):
    t, s = strides
    if x.shape[-1] != out or (t, s) != (1, 1):
        shortcut = factorized.conv3d(x, out, (1, 1, 1), (t, s, s), f"{name}_shortcut_conv",
                                     init)
        shortcut = factorized.batch_norm(f"{name}_shortcut_bn")(shortcut)
    else:
        shortcut = x
    y = factorized.conv_bn(x, inner, (1, 1, 1), (1, 1, 1), f"{name}_conv_a", f"{name}_bn_a",
                           init)
    y = factorized.conv_bn(y, inner, (3, 1, 1), (t, 1, 1), f"{name}_conv_t", f"{name}_bn_t",
                           init)
    y = factorized.conv_bn(y, inner, (1, 3, 3), (1, s, s), f"{name}_conv_xy", f"{name}_bn_b",
                           init)
    y = factorized.conv_bn(y, out, (1, 1, 1), (1, 1, 1), f"{name}_conv_c", f"{name}_bn_c",
                           init, relu=False, zero_gamma=True)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def R2Plus1DResNet(depth=50, frames=16, include_top=True, weights=None, input_tensor=None,
                   input_shape=None, pooling=None, classes=400,
                   classifier_activation="softmax", dropout_rate=0.5,
                   normalization="auto", base_filters=64, head_pool_size=HEAD_POOL,
                   name=None, seed=None):
    """Builds pytorchvideo's bottleneck R(2+1)D ResNet (see the module docstring).

    Args:
        depth: 50, 101 or 152 (pytorchvideo's stage depths; weights are published for 50).
        frames: frames per clip (16 in the published checkpoint, sampled every 4th frame).
        include_top: whether to include the head (pool, dropout, fc, activation).
        weights: None, the manifest record "r2plus1d_r50_16x4_kinetics400_pytorchvideo"
            (pytorchvideo publishes no hash: it loads with allow_unverified=True, see
            keras_tin.weights), or a local file: .weights.h5 / .keras, or pytorchvideo's
            .pyth / a .pth with its keys (blocks.0.conv.weight, ...).
        input_tensor: optional Keras tensor (batch, frames, H, W, 3) to build on.
        input_shape: (frames, H, W, 3) or (H, W, 3); default (frames, 224, 224, 3).
        pooling: with include_top=False: None gives the last feature map
            (batch, t, h, w, 2048); "avg"/"max" give (batch, 2048).
        classes: number of classes.
        classifier_activation: activation of the output (None for logits). pytorchvideo
            applies its softmax per head-pool position before averaging them; at
            16 x 224 x 224 there is one position, so the two agree; elsewhere keras_tin
            averages logits first.
        dropout_rate: dropout before the classifier (0.5 in pytorchvideo's hub model).
        normalization: "tadaconv" (mean 0.45, std 0.225 on 0-1 RGB, pytorchvideo's
            Kinetics training), "imagenet", "inception", or None when the caller
            normalises; the model then takes RGB in [0, 255]. "auto": the manifest record's
            when `weights` names it, else "tadaconv".
        base_filters: stem width (64; narrower networks for tests and the demo).
        head_pool_size: the head's average pool (t, h, w), stride 1; cut to the last map
            where that is smaller (pytorchvideo's AvgPool3d would refuse such an input).
        name: model name.
        seed: None, or an integer seeding every initialiser (same seed, same weights).

    Returns:
        A keras.Model on clips (batch, frames, H, W, 3).
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}. Received: "
                         f"depth={depth!r}")
    if normalization == "auto":  # the record's, else pytorchvideo's Kinetics 0.45 / 0.225
        normalization = (resolve_normalization("auto", weights) if _is_record(weights)
                         else "tadaconv")
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be None or one of {sorted(NORMALIZATIONS)}. "
                         f"Received: normalization={normalization!r}")
    frames = positive_int(frames, "frames")
    classes = factorized.check_pooling(pooling, include_top, classes)
    base_filters = positive_int(base_filters, "base_filters")
    head_pool_size = _pool_size(head_pool_size)
    init = factorized.Initializers(seed)
    inputs, x = factorized.video_input(frames, input_tensor, input_shape, normalization)
    x = factorized.conv_bn(x, base_filters, (1, 7, 7), (1, 2, 2), "stem_conv", "stem_bn", init)
    out = base_filters * 4
    for stage, count in enumerate(STAGE_BLOCKS[depth]):
        for b in range(count):
            strides = (TEMPORAL_STRIDES[stage], SPATIAL_STRIDES[stage]) if b == 0 else (1, 1)
            x = _block(x, out // 4, out, strides, f"res{stage + 2}_{b}", init)
        out *= 2
    x = factorized.clip_head(x, include_top, pooling, classes, classifier_activation,
                             dropout_rate, init, pool_size=head_pool_size)
    return finish_model(inputs, x, name or f"r2plus1d_r{depth}", weights, False)


def _is_record(weights):
    from keras_tin.weights import registry
    return registry.is_pretrained_name(weights)


def _pool_size(value):
    try:
        pool = tuple(int(v) for v in value)
    except TypeError:
        pool = ()
    if len(pool) != 3 or min(pool) < 1:
        raise ValueError(f"head_pool_size must be three positive integers (t, h, w). "
                         f"Received: head_pool_size={value!r}")
    return pool


def R2Plus1DResNet50(frames=16, include_top=True, weights=None, input_tensor=None,
                     input_shape=None, pooling=None, classes=400,
                     classifier_activation="softmax", dropout_rate=0.5, normalization="auto",
                     name=None, seed=None, **kwargs):
    """pytorchvideo's R(2+1)D-50 (`R2Plus1DResNet(depth=50, ...)`; see R2Plus1DResNet).
    weights="r2plus1d_r50_16x4_kinetics400_pytorchvideo" is the PyTorchVideo K400 16x4
    checkpoint (76.01 / 92.23 published)."""
    return R2Plus1DResNet(50, frames=frames, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape,
                          pooling=pooling, classes=classes,
                          classifier_activation=classifier_activation,
                          dropout_rate=dropout_rate, normalization=normalization, name=name,
                          seed=seed, **kwargs)
