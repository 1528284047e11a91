"""An independent PyTorch reference of STM-ResNet-50/101, written from /work/shared/ZOO_SPEC.md
section 4 (STM) for testing keras_tin's conversion.

Module names reproduce the first author's code (STM.py / CMM.py, no official release), so
`Release(...).state_dict()` is a checkpoint in that code's layout:

    module.base_model.conv1.weight, module.base_model.bn1.*,
    module.base_model.layerL.b.{conv1, bn1, conv2, bn2, conv3, bn3, downsample.0,
        downsample.1}.*,
    module.base_model.layerL.b.shift.weight                      (C, 1, 3) CSTM
    module.base_model.layerL.b.mb.{stage_conv, stage_bn, shift, conv1x1}.*  CMM
    module.base_model.fc.{weight, bias}     the per-frame classifier (averaged over T)

`STM(...)` alone is the bare network (keys without the prefixes); `STM(..., stm=False)`
is the plain torchvision ResNet, whose state_dict() is an ImageNet-layout checkpoint.
`base_filters` narrows the network for small tests (64: the real widths). Input: NCHW
frames, folded clip-major (rows n*T .. n*T+T-1 are clip n), already normalised.
"""

import torch
from torch import nn
import torch.nn.functional as F

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def stm_shift_weight(channels):
    """The CSTM Conv1d's initial weight (C, 1, 3) as the author's slices set it: the first
    C//4 channels read frame t-1, the next C//2 frame t, the last ceil(C/4) (the slice
    [-C//4:], Python's floor of -C/4) frame t+1. With C % 4 == 0: C/4, C/2, C/4."""
    weight = torch.zeros(channels, 1, 3)
    quarter, half = channels // 4, channels // 2
    weight[:quarter, 0, 0] = 1.0
    weight[quarter:quarter + half, 0, 1] = 1.0
    weight[-channels // 4:, 0, 2] = 1.0
    return weight


class MotionModule(nn.Module):
    """CMM: conv1x1(d), d[t] = shift(r)[t+1] - r[t] (zero at the last frame),
    r = stage_bn(stage_conv(x))."""

    def __init__(self, channels, frames, reduction=16):
        super().__init__()
        reduced = channels // reduction
        self.frames = frames
        self.stage_conv = nn.Conv2d(channels, reduced, 1, bias=False)
        self.stage_bn = nn.BatchNorm2d(reduced)
        self.shift = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.conv1x1 = nn.Conv2d(reduced, channels, 1, bias=False)

    def forward(self, x):
        r = self.stage_bn(self.stage_conv(x))
        nt, c, h, w = r.shape
        t = self.frames
        now = r.view(nt // t, t, c, h, w)
        later = self.shift(r).view(nt // t, t, c, h, w)
        diff = torch.cat([later[:, 1:] - now[:, :-1], torch.zeros_like(now[:, :1])], dim=1)
        return self.conv1x1(diff.reshape(nt, c, h, w))


class Bottleneck(nn.Module):
    """torchvision Bottleneck (stride on conv2); with stm: CSTM (shift then conv2) + CMM."""

    def __init__(self, inplanes, planes, stride, frames, stm):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        if stride != 1 or inplanes != 4 * planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride,
                                                      bias=False), nn.BatchNorm2d(4 * planes))
        else:
            self.downsample = None
        self.stride, self.frames, self.stm = stride, frames, stm
        if stm:
            self.shift = nn.Conv1d(planes, planes, 3, padding=1, groups=planes, bias=False)
            with torch.no_grad():
                self.shift.weight.copy_(stm_shift_weight(planes))
            self.mb = MotionModule(planes, frames)

    def temporal_conv(self, x):
        """The CSTM Conv1d over time at every position and channel."""
        nt, c, h, w = x.shape
        t = self.frames
        seq = x.view(nt // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)
        seq = self.shift(seq)
        return seq.view(nt // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        if self.stm:
            motion = self.mb(out)
            if self.stride == 2:
                motion = F.max_pool2d(motion, 2)
            out = F.relu(self.bn2(self.conv2(self.temporal_conv(out)))) + motion
        else:
            out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


class STM(nn.Module):
    """STM-ResNet (stm=True) or the plain ResNet; forward gives per-frame logits."""

    def __init__(self, depth=50, frames=8, classes=1000, base_filters=64, stm=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_filters, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_filters)
        inplanes = base_filters
        for i, count in enumerate(STAGE_BLOCKS[depth]):
            planes = base_filters * 2 ** i
            blocks = []
            for b in range(count):
                stride = (2 if i else 1) if b == 0 else 1
                blocks.append(Bottleneck(inplanes, planes, stride, frames, stm))
                inplanes = 4 * planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean(dim=(2, 3)))


class _TSN(nn.Module):
    def __init__(self, depth, frames, classes, base_filters):
        super().__init__()
        self.frames = frames
        self.base_model = STM(depth, frames, classes, base_filters)

    def forward(self, x):
        logits = self.base_model(x)
        return logits.view(-1, self.frames, logits.shape[-1]).mean(1)


class Release(nn.Module):
    """The author's TSN wrapper under DataParallel (keys module.base_model.*):
    forward(x (N*T, 3, H, W)) -> clip logits (N, K), per-frame logits averaged over T."""

    def __init__(self, depth=50, frames=8, classes=174, base_filters=64):
        super().__init__()
        self.module = _TSN(depth, frames, classes, base_filters)

    def forward(self, x):
        return self.module(x)


def randomize(model, seed=0):
    """Random weights with non-trivial BN statistics; the CSTM conv moved off its shift
    initialisation and the CMM made as strong as the CSTM branch, so both are tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv1d):
                module.weight.add_(0.3 * torch.randn(module.weight.shape, generator=gen))
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.2 + 0.5 * torch.rand(c, generator=gen))
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
    return model.eval()


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
