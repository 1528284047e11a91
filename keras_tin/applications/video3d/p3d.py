"""P3D ResNets (Pseudo-3D residual networks; Qiu, Yao and Mei, "Learning Spatio-Temporal
Representation with Pseudo-3D Residual Networks", ICCV 2017): P3D-63 / 131 / 199 on the
ResNet-50 / 101 / 152 stage depths, as the PyTorch port qijiezhao/pseudo-3d-pytorch
(p3d_model.py) builds them (ZOO_SPEC.md section 10). Architecture only: see P3DResNet.

- stem: Conv3D (1, 7, 7) stride (1, 2, 2) + BN + ReLU, MaxPool3D (2, 3, 3) stride 2
  (frames and space halved);
- res2..res4: pseudo-3D bottlenecks, numbered from 0 over the whole network, of type
  A, B, C cycling (block n is "ABC"[n % 3]): conv1 1x1x1 + BN + ReLU, then with
  S = (1, 3, 3) conv + BN + ReLU and T = (3, 1, 1) conv + BN + ReLU:
  A = T(S(x)) (serial), B = S(x) + T(x) (parallel), C = S(x) + T(S(x)); then conv4 1x1x1
  (4x) + BN, + shortcut, ReLU. The first block of res3 and res4 has spatial stride 2 on
  conv1 and on its 1x1x1 shortcut (res2's has stride 1); MaxPool3D (2, 1, 1) stride
  (2, 1, 1) after each of res2, res3, res4;
- res5: 2-D bottlenecks (1x1, 3x3, 1x1; spatial stride 2 in the first block and its
  shortcut) on the frame left after the four halvings (16 frames -> 1), applied per frame;
- head: average pool, dropout 0.5, fc. The port pools 5x5 with stride 1 at 160 px, which
  covers the 5x5 map: a global average, used here at any size and frame count.
Input 16 x 160 x 160 in the paper.
"""

import keras

from keras_tin.applications.video3d import factorized
from keras_tin.applications.video_model import NORMALIZATIONS
from keras_tin.applications.video_model import finish_model
from keras_tin.layers.pool3d import SeparableMaxPooling3D
from keras_tin.layers.temporal_interlace import positive_int

STAGE_BLOCKS = {63: (3, 4, 6, 3), 131: (3, 4, 23, 3), 199: (3, 8, 36, 3)}
BLOCK_TYPES = "ABC"
TEMPORAL_HALVINGS = 4  # the stem's max-pool and the pools after res2, res3, res4
WEIGHTS_REFUSAL = (
    "P3D is architecture-only in keras_tin: the published P3D weights are Caffe models "
    "(ZhaofanQiu/pseudo-3d-residual-networks, OneDrive: Sports-1M, Kinetics RGB and flow), "
    "which keras_tin does not read, and the PyTorch port qijiezhao/pseudo-3d-pytorch has "
    "withdrawn its converted files. Build it with weights=None and train it (or load a "
    ".weights.h5 / .keras file saved from a keras_tin P3D model).")


def _check_weights(weights):
    if weights is None:
        return
    if isinstance(weights, str) and weights.endswith((".weights.h5", ".keras")):
        return
    raise ValueError(f"{WEIGHTS_REFUSAL} Received: weights={weights!r}")


def _block3d(x, planes, strides, kind, name, init):
    cin = x.shape[-1]
    if strides != 1 or cin != planes * 4:
        shortcut = factorized.conv3d(x, planes * 4, (1, 1, 1), (1, strides, strides),
                                     f"{name}_downsample_conv", init)
        shortcut = factorized.batch_norm(f"{name}_downsample_bn")(shortcut)
    else:
        shortcut = x
    y = factorized.conv_bn(x, planes, (1, 1, 1), (1, strides, strides), f"{name}_conv1",
                           f"{name}_bn1", init)

    def spatial(h):
        return factorized.conv_bn(h, planes, (1, 3, 3), (1, 1, 1), f"{name}_conv2",
                                  f"{name}_bn2", init)

    def temporal(h):
        return factorized.conv_bn(h, planes, (3, 1, 1), (1, 1, 1), f"{name}_conv3",
                                  f"{name}_bn3", init)

    if kind == "A":
        y = temporal(spatial(y))
    elif kind == "B":
        y = keras.layers.Add(name=f"{name}_st_add")([spatial(y), temporal(y)])
    else:
        s = spatial(y)
        y = keras.layers.Add(name=f"{name}_st_add")([s, temporal(s)])
    y = factorized.conv_bn(y, planes * 4, (1, 1, 1), (1, 1, 1), f"{name}_conv4",
                           f"{name}_bn4", init, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _block2d(x, planes, strides, name, init):
    """A ResNet bottleneck applied per frame ((1, k, k) kernels)."""
    if strides != 1 or x.shape[-1] != planes * 4:
        shortcut = factorized.conv3d(x, planes * 4, (1, 1, 1), (1, strides, strides),
                                     f"{name}_downsample_conv", init)
        shortcut = factorized.batch_norm(f"{name}_downsample_bn")(shortcut)
    else:
        shortcut = x
    y = factorized.conv_bn(x, planes, (1, 1, 1), (1, strides, strides), f"{name}_conv1",
                           f"{name}_bn1", init)
    y = factorized.conv_bn(y, planes, (1, 3, 3), (1, 1, 1), f"{name}_conv_normal",
                           f"{name}_bn_normal", init)
    y = factorized.conv_bn(y, planes * 4, (1, 1, 1), (1, 1, 1), f"{name}_conv4",
                           f"{name}_bn4", init, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def P3DResNet(depth=199, frames=16, include_top=True, weights=None, input_tensor=None,
              input_shape=None, pooling=None, classes=400, classifier_activation="softmax",
              dropout_rate=0.5, normalization="imagenet", base_filters=64, name=None,
              seed=None):
    """Builds a P3D ResNet (see the module docstring). Architecture only: no pretrained
    weights (the published ones are Caffe models); `weights` other than None, or a
    .weights.h5 / .keras file of a keras_tin P3D model, is refused with the reason.

    Args:
        depth: 63, 131 or 199 (ResNet-50 / 101 / 152 stage depths).
        frames: frames per clip, at least 16 (the frames are halved four times before
            res5; 16 in the paper, which leaves one frame for the 2-D res5; with more,
            res5 runs per remaining frame and the head averages over them).
        include_top: whether to include the head (average pool, dropout, fc, activation).
        weights: None (or a keras_tin .weights.h5 / .keras file of this architecture).
        input_tensor: optional Keras tensor (batch, frames, H, W, 3) to build on.
        input_shape: (frames, H, W, 3) or (H, W, 3); default (frames, 160, 160, 3).
        pooling: with include_top=False: None gives the res5 feature map, "avg"/"max"
            (batch, 2048).
        classes: number of classes.
        classifier_activation: activation of the output (None for logits).
        dropout_rate: dropout before the classifier (0.5 as the port).
        normalization: "imagenet" (the PyTorch port's mean/std; the Caffe models subtract
            BGR 104/117/123 instead), "inception", "tadaconv", or None when the caller
            normalises. The model takes RGB in [0, 255].
        base_filters: stem width (64; narrower networks for tests and the demo).
        name: model name.
        seed: None, or an integer seeding every initialiser.

    Returns:
        A keras.Model on clips (batch, frames, H, W, 3).
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}. Received: "
                         f"depth={depth!r}")
    _check_weights(weights)
    if normalization == "auto":
        normalization = "imagenet"
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be None or one of {sorted(NORMALIZATIONS)}. "
                         f"Received: normalization={normalization!r}")
    frames = positive_int(frames, "frames")
    if frames >> TEMPORAL_HALVINGS < 1:
        raise ValueError(f"P3D halves the frames {TEMPORAL_HALVINGS} times before its 2-D "
                         f"res5 (stem max-pool, then after res2, res3 and res4), so it needs "
                         f"at least {1 << TEMPORAL_HALVINGS} frames (16 in the paper). "
                         f"Received: frames={frames}")
    classes = factorized.check_pooling(pooling, include_top, classes)
    base_filters = positive_int(base_filters, "base_filters")
    if input_shape is None and input_tensor is None:
        input_shape = (frames, 160, 160, 3)
    init = factorized.Initializers(seed)
    inputs, x = factorized.video_input(frames, input_tensor, input_shape, normalization)
    x = factorized.conv_bn(x, base_filters, (1, 7, 7), (1, 2, 2), "conv1_custom", "bn1", init)
    x = keras.layers.ZeroPadding3D((0, 1, 1), name="maxpool_pad")(x)  # 0 == -inf after ReLU
    x = SeparableMaxPooling3D((2, 3, 3), strides=2, name="maxpool")(x)  # TFLite builtins
    index = 0
    for stage, count in enumerate(STAGE_BLOCKS[depth]):
        planes = base_filters * 2 ** stage
        for b in range(count):
            strides = 2 if (b == 0 and stage > 0) else 1
            block_name = f"layer{stage + 1}_{b}"
            if stage < 3:
                x = _block3d(x, planes, strides, BLOCK_TYPES[index % 3], block_name, init)
            else:
                x = _block2d(x, planes, strides, block_name, init)
            index += 1
        if stage < 3:
            x = SeparableMaxPooling3D((2, 1, 1), strides=(2, 1, 1),
                                      name=f"layer{stage + 1}_maxpool")(x)
    x = factorized.clip_head(x, include_top, pooling, classes, classifier_activation,
                             dropout_rate, init)
    return finish_model(inputs, x, name or f"p3d{depth}", weights, False)


def _named(depth):
    def build(frames=16, include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=400, classifier_activation="softmax", dropout_rate=0.5,
              normalization="imagenet", name=None, seed=None, **kwargs):
        return P3DResNet(depth, frames=frames, include_top=include_top, weights=weights,
                         input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                         classes=classes, classifier_activation=classifier_activation,
                         dropout_rate=dropout_rate, normalization=normalization, name=name,
                         seed=seed, **kwargs)
    build.__name__ = build.__qualname__ = f"P3D{depth}"
    build.__doc__ = (f"P3D-{depth} (`P3DResNet(depth={depth}, ...)`; architecture only, see "
                     f"P3DResNet).")
    return build


P3D63 = _named(63)
P3D131 = _named(131)
P3D199 = _named(199)
