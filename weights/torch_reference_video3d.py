"""Independent PyTorch R(2+1)D-34 networks with the module structure of two publishers, so
that their state_dict() has the published checkpoints' keys, written from ZOO_SPEC.md
section 9 (the torchvision R3D / MC3 / R(2+1)D-18 are checked against torchvision itself):

- VMZR2Plus1D34: VMZ / IG-65M as moabitcoin/ig65m-pytorch builds it (torchvision's
  VideoResNet structure: stem Sequential (conv_s, BN, ReLU, conv_t, BN, ReLU), 45 middle
  channels; blocks with conv1 = Sequential((2+1)D Sequential(conv_s, BN, ReLU, conv_t), BN,
  ReLU), conv2 = Sequential((2+1)D, BN); downsample Sequential(Conv3d 1x1x1 stride 2, BN);
  fc). Middle width PER CONV: floor(27 i o / (9 i + 3 o)) from that conv's (in, out).
  Every BN has eps 1e-3. Layers 3, 4, 6, 3; temporal and spatial stride 2 in layers 2-4;
  no max-pool. Keys stem.0.weight, layer2.0.conv2.0.0.weight, ..., fc.weight.
- MMAction2R2Plus1D34: mmaction2 ResNet2Plus1d (depth 34) + I3DHead: every conv an
  mmcv-ConvModule-like `conv` (a Conv2plus1d: conv_s (1, k, k), bn_s (eps 1e-5), ReLU,
  conv_t (k, 1, 1), middle width int(3 i o k k / (i k k + 3 o))) followed by `bn` (eps 1e-3)
  and ReLU (not after conv2 / downsample). Stem: Conv2plus1d (3, 7, 7) stride (1, 2, 2)
  padding (1, 3, 3), BN, ReLU, then MaxPool3d (1, 3, 3) stride (1, 2, 2) padding (0, 1, 1).
  Shortcut of the first block of layers 2-4: a Conv2plus1d with kernel 1 (stride (2, 2, 2)
  split: (1, 2, 2) on conv_s, (2, 1, 1) on conv_t) + BN. Head: global average, fc_cls.
  Keys backbone.conv1.conv.conv_s.weight, backbone.layer1.0.conv1.bn.weight, ...,
  cls_head.fc_cls.weight.

Input: (N, 3, T, H, W), already normalised; output logits.
"""

import torch
from torch import nn


def _width(i, o, k=3, kt=3):
    return (kt * k * k * i * o) // (k * k * i + kt * o)


class _Factorized(nn.Module):
    """mmaction2 Conv2plus1d: conv_s, bn_s, ReLU, conv_t."""

    def __init__(self, i, o, k, stride, pad):
        super().__init__()
        mid = (3 * i * o * k * k) // (i * k * k + 3 * o)
        self.conv_s = nn.Conv3d(i, mid, (1, k, k), (1, stride[1], stride[2]),
                                (0, pad, pad), bias=False)
        self.bn_s = nn.BatchNorm3d(mid)  # Conv2plus1d's own norm_cfg: BN3d, eps 1e-5
        self.conv_t = nn.Conv3d(mid, o, (k if k > 1 else 1, 1, 1), (stride[0], 1, 1),
                                (pad, 0, 0), bias=False)

    def forward(self, x):
        return self.conv_t(torch.relu(self.bn_s(self.conv_s(x))))


class _ConvModule(nn.Module):
    def __init__(self, i, o, k, stride, pad, act=True):
        super().__init__()
        self.conv = _Factorized(i, o, k, stride, pad)
        self.bn = nn.BatchNorm3d(o, eps=1e-3)
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.act else x


class _MMBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = _ConvModule(i, o, 3, (stride,) * 3, 1)
        self.conv2 = _ConvModule(o, o, 3, (1, 1, 1), 1, act=False)
        self.downsample = (_ConvModule(i, o, 1, (stride,) * 3, 0, act=False)
                           if stride != 1 or i != o else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv2(self.conv1(x)) + identity)


class _MMBackbone(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.conv1 = _ConvModule(3, 64, 7, (1, 2, 2), 3)
        self.conv1.conv.conv_t = nn.Conv3d(self.conv1.conv.conv_t.in_channels, 64, (3, 1, 1),
                                           1, (1, 0, 0), bias=False)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        i = 64
        for n, (o, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for b in range(count):
                blocks.append(_MMBlock(i, o, 2 if n > 0 and b == 0 else 1))
                i = o
            setattr(self, f"layer{n + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        for n in range(1, 5):
            x = getattr(self, f"layer{n}")(x)
        return x


class _MMHead(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.fc_cls = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc_cls(x.mean(dim=(2, 3, 4)))


class MMAction2R2Plus1D34(nn.Module):
    def __init__(self, classes=400, layers=(3, 4, 6, 3)):
        super().__init__()
        self.backbone = _MMBackbone(layers)
        self.cls_head = _MMHead(classes)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


def _vmz_2plus1d(i, o, mid, stride):
    return nn.Sequential(
        nn.Conv3d(i, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(mid, eps=1e-3), nn.ReLU(),
        nn.Conv3d(mid, o, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class _VMZBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Sequential(_vmz_2plus1d(i, o, _width(i, o), stride),
                                   nn.BatchNorm3d(o, eps=1e-3), nn.ReLU())
        self.conv2 = nn.Sequential(_vmz_2plus1d(o, o, _width(o, o), 1),
                                   nn.BatchNorm3d(o, eps=1e-3))
        self.downsample = (nn.Sequential(nn.Conv3d(i, o, 1, stride, bias=False),
                                         nn.BatchNorm3d(o, eps=1e-3))
                           if stride != 1 or i != o else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv2(self.conv1(x)) + identity)


class VMZR2Plus1D34(nn.Module):
    def __init__(self, classes=400, layers=(3, 4, 6, 3)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            nn.BatchNorm3d(45, eps=1e-3), nn.ReLU(),
            nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False),
            nn.BatchNorm3d(64, eps=1e-3), nn.ReLU())
        i = 64
        for n, (o, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for b in range(count):
                blocks.append(_VMZBlock(i, o, 2 if n > 0 and b == 0 else 1))
                i = o
            setattr(self, f"layer{n + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.stem(x)
        for n in range(1, 5):
            x = getattr(self, f"layer{n}")(x)
        return self.fc(x.mean(dim=(2, 3, 4)))


def randomize_batchnorm(model, seed=0):
    """Non-zero BN statistics and affine parameters (so the eps and the statistics matter)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                shape = m.running_mean.shape
                m.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(shape, generator=generator) - 0.5)
    return model
