"""An independent PyTorch reference of Res2Net-50 (26w x 4s) and TEA-Res2Net-50, written from
/work/shared/ZOO_SPEC.md section 3 (TEA) for testing keras_tin's conversion.

Module names reproduce the publishers' state-dict keys:
- `Res2Net(temporal=None)`: the Res2Net authors' ImageNet model (conv1, bn1,
  layerL.b.{conv1, bn1, convs.i, bns.i, conv3, bn3, downsample.0, downsample.1}, fc), so
  its state_dict() is a Res2Net ImageNet checkpoint.
- `Release(temporal="tea")`: TEA's TSN wrapper as trained with DataParallel
  (module.base_model.* with me.{conv1, bn1, conv2, conv3, bn3} and shifts.i.conv in every
  block, module.new_fc.*), so its state_dict() is a checkpoint of the TEA code;
  `Release(temporal=None)` is a TSN-Res2Net in the same wrapper.

`base_filters` narrows the network for small tests (64: the real Res2Net-50). With a
group width w that is odd (base_filters not a multiple of 64) the temporal convs cover all
w channels (the published code would fail there). Input: NCHW frames, folded clip-major
(rows n*T .. n*T+T-1 are clip n), already normalised.
"""

import collections

import torch
from torch import nn
import torch.nn.functional as F

STAGE_BLOCKS = (3, 4, 6, 3)


class MotionExcitation(nn.Module):
    """x + x * (sigmoid(bn3(conv3(GAP(diff)))) - 0.5), diff[t] = conv2(b)[t+1] - b[t]."""

    def __init__(self, channels, frames, reduction=16):
        super().__init__()
        reduced = channels // reduction
        self.frames = frames
        self.conv1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(reduced)
        self.conv2 = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.conv3 = nn.Conv2d(reduced, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x):
        b = self.bn1(self.conv1(x))
        t = self.frames
        clips = b.reshape((-1, t) + b.shape[1:])
        moved = self.conv2(b).reshape(clips.shape)
        diff = torch.zeros_like(clips)
        diff[:, :t - 1] = moved[:, 1:] - clips[:, :t - 1]
        y = diff.reshape(b.shape).mean(dim=(2, 3), keepdim=True)
        y = torch.sigmoid(self.bn3(self.conv3(y))) - 0.5
        return x + x * y


class TemporalConv(nn.Module):
    """Channel-wise Conv1d over time (k 3, padding 1, no bias): key <name>.conv.weight."""

    def __init__(self, channels, frames, shift):
        super().__init__()
        self.frames = frames
        self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            if shift:  # n_div 2: [0, w//2) <- frame t+1, [w//2, 2*(w//2)) <- frame t-1
                fold = channels // 2
                self.conv.weight[:fold, 0, 2] = 1
                self.conv.weight[fold:2 * fold, 0, 0] = 1
                self.conv.weight[2 * fold:, 0, 1] = 1
            else:
                self.conv.weight[:, 0, 1] = 1

    def forward(self, x):
        nt, c, h, w = x.shape
        t = self.frames
        seq = x.reshape(nt // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)
        seq = self.conv(seq)
        return seq.reshape(nt // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)


class Bottle2neck(nn.Module):
    """Res2Net bottleneck, width floor(planes * 26 / 64), scale 4; TEA adds `me`, `shifts`."""

    def __init__(self, inplanes, planes, stride, first, temporal, frames):
        super().__init__()
        width = planes * 26 // 64
        self.width, self.first = width, first
        self.conv1 = nn.Conv2d(inplanes, 4 * width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4 * width)
        if temporal == "tea":
            self.me = MotionExcitation(4 * width, frames)
            self.shifts = nn.ModuleList(TemporalConv(width, frames, shift=(i == 3))
                                        for i in range(4))
        self.temporal = temporal
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False)
                                   for _ in range(3))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(3))
        self.stride = stride
        self.conv3 = nn.Conv2d(4 * width, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        if stride != 1 or inplanes != 4 * planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride,
                                                      bias=False), nn.BatchNorm2d(4 * planes))
        else:
            self.downsample = None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        if self.temporal == "tea":
            out = self.me(out)
        parts = list(torch.split(out, self.width, dim=1))
        outs, sp = [], None
        for i in range(3):
            sp = parts[i] if (i == 0 or self.first) else sp + parts[i]
            if self.temporal == "tea":
                sp = self.shifts[i](sp)
            sp = F.relu(self.bns[i](self.convs[i](sp)))
            outs.append(sp)
        last = parts[3]
        if self.temporal == "tea":
            last = self.shifts[3](last)
        if self.first:
            last = F.avg_pool2d(last, 3, self.stride, 1, count_include_pad=True)
        outs.append(last)
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


class Res2Net(nn.Module):
    """Res2Net-50-26w-4s (temporal None, with fc) or TEA's base model (temporal 'tea')."""

    def __init__(self, temporal=None, frames=8, classes=1000, base_filters=64, fc=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_filters, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_filters)
        inplanes = base_filters
        for i, count in enumerate(STAGE_BLOCKS):
            planes = base_filters * 2 ** i
            layer = []
            for b in range(count):
                layer.append(Bottle2neck(inplanes, planes, (2 if i else 1) if b == 0 else 1,
                                         b == 0, temporal, frames))
                inplanes = 4 * planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.out_channels = inplanes
        self.fc = nn.Linear(inplanes, classes) if fc else None

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


class _Wrapper(nn.Module):
    def __init__(self, frames, classes, temporal, base_filters):
        super().__init__()
        self.frames = frames
        # TSN replaces base_model.fc by Dropout (no parameters) and adds new_fc.
        self.base_model = Res2Net(temporal, frames, base_filters=base_filters, fc=False)
        self.new_fc = nn.Linear(self.base_model.out_channels, classes)

    def forward(self, x):
        logits = self.new_fc(self.base_model.features(x))
        return logits.reshape(-1, self.frames, logits.shape[-1]).mean(1)


class Release(nn.Module):
    """TEA's TSN wrapper under DataParallel: keys module.base_model.*, module.new_fc.*;
    forward(x (N*T, 3, H, W)) -> clip logits (N, K), per-frame logits averaged."""

    def __init__(self, temporal="tea", frames=8, classes=174, base_filters=64):
        super().__init__()
        self.module = _Wrapper(frames, classes, temporal, base_filters)

    def forward(self, x):
        return self.module(x)


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_dict(model):
    """The model's state dict as a plain OrderedDict of tensors."""
    return collections.OrderedDict(model.state_dict())
