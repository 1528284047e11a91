"""An independent PyTorch SqueezeTime with the publisher's module tree, written from
ZOO_SPEC.md section 2 (xinghaochen/SqueezeTime @ 465900f, an mmaction2 1.x plug-in), so
that `Recognizer(...).state_dict()` has the published checkpoints' keys:

    backbone.net.conv1.weight (64, 3T, 5, 5), backbone.net.bn1.*
    backbone.net.layer{s}.{i}.downsample.{0,1}.*          (stride-2 blocks: 2x2 depthwise
                                                           conv with bias, BN)
    backbone.net.layer{s}.{i}.conv1.weight, bn1.*, conv3.weight, bn3.*, bn2.*
    backbone.net.layer{s}.{i}.conv2.param_conv.{1,2,4}.*   (1x1 conv, BN, 1x1 conv)
    backbone.net.layer{s}.{i}.conv2.temporal_conv.weight
    backbone.net.layer{s}.{i}.conv2.spatial_conv.short_conv.{weight,bias}
    backbone.net.layer{s}.{i}.conv2.spatial_conv.glo_conv.{0,1,3,4,6}.*
    backbone.net.layer{s}.{i}.conv2.spatial_conv.pos_embed (1, 16, P, P)
    backbone.net.layer{s}.{i}.shortcut_conv.{0,1}.*         (where the width changes)
    cls_head.fc_cls.{weight,bias}

What it computes (the spec's "Architecture, exact"): the (N, 3, T, H, W) clip viewed as
(N, 3T, H, W) (channel c*T + t); stem conv 5x5 s2 p2 + BN + ReLU + max-pool 3 s2 p1;
bottlenecks [3, 4, 6, 3] (stride-2 stages start with downsample applied to the block
input before both branches; projection shortcut only where in != 4*planes); the CTL block
temporal_conv(alpha*x) + short_conv(x) * gate(alpha*x), alpha = sigmoid(conv(relu(bn(conv(
GAP(x)))))), the gate's position embedding F.interpolate-d (bilinear, align_corners=True)
only when the map is not P x P; head: average pool, fc (dropout is off in eval).

Input: normalised clips (N, 3, T, H, W). `base_filters` narrows the network and
`stage_blocks` shortens it for tests.
"""

import torch
from torch import nn
import torch.nn.functional as F

STAGE_BLOCKS = (3, 4, 6, 3)
POS_DIM = (56, 28, 14, 7)


class IOI(nn.Module):
    """spatial_conv: short_conv(x) * sigmoid(glo_conv(alpha * x) with the embedding)."""

    def __init__(self, channels, pos_dim):
        super().__init__()
        self.short_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.glo_conv = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 7, padding=3), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, channels, 3, padding=1), nn.Sigmoid())
        self.pos_embed = nn.Parameter(torch.randn(1, 16, pos_dim, pos_dim))

    def forward(self, x, alpha):
        short = self.short_conv(x)
        g = self.glo_conv[2](self.glo_conv[1](self.glo_conv[0](x * alpha)))
        size = tuple(g.shape[-2:])
        embed = self.pos_embed
        if tuple(embed.shape[-2:]) != size:
            embed = F.interpolate(embed, size=size, mode="bilinear", align_corners=True)
        g = g + embed
        for layer in list(self.glo_conv)[3:]:  # 7x7 conv, BN, ReLU, 3x3 conv, sigmoid
            g = layer(g)
        return short * g


class CTL(nn.Module):
    """The Channel-Time Learning block (the publisher's `Conv2d`, kernel_size 1)."""

    def __init__(self, channels, pos_dim):
        super().__init__()
        self.param_conv = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid())
        self.temporal_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.spatial_conv = IOI(channels, pos_dim)

    def forward(self, x):
        alpha = self.param_conv(x)
        return self.temporal_conv(alpha * x) + self.spatial_conv(x, alpha)


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, pos_dim):
        super().__init__()
        self.stride = stride
        if stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cin, 2, stride, groups=cin),
                                            nn.BatchNorm2d(cin))
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = CTL(planes, pos_dim)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut_conv = None
        if cin != 4 * planes:
            self.shortcut_conv = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, bias=False),
                                               nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        if self.stride != 1:
            x = self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.shortcut_conv is None else self.shortcut_conv(x)
        return F.relu(y + shortcut)


class Net(nn.Module):
    def __init__(self, frames, base_filters, pos_dim, stage_blocks=STAGE_BLOCKS):
        super().__init__()
        self.conv1 = nn.Conv2d(3 * frames, base_filters, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(base_filters)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = base_filters
        for stage, blocks in enumerate(stage_blocks):
            planes = base_filters * 2 ** stage
            layer = []
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                layer.append(Bottleneck(cin, planes, stride, pos_dim[stage]))
                cin = 4 * planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.out_channels = cin

    def forward(self, x):
        n, c, t, h, w = x.shape
        x = x.reshape(n, c * t, h, w)  # channel c*T + t
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return x


class Backbone(nn.Module):
    """The mmaction2 `SqueezeTime` backbone module: the network under `net`."""

    def __init__(self, frames, base_filters, pos_dim, stage_blocks=STAGE_BLOCKS):
        super().__init__()
        self.net = Net(frames, base_filters, pos_dim, stage_blocks)

    def forward(self, x):
        return self.net(x)


class Head(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.fc_cls = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc_cls(x.mean(dim=(2, 3)))


class Recognizer(nn.Module):
    """SqueezeTime + I2DHead (mmaction2 Recognizer3D): logits of (N, 3, T, H, W) clips."""

    def __init__(self, frames=16, classes=400, base_filters=64, pos_dim=POS_DIM,
                 stage_blocks=STAGE_BLOCKS):
        super().__init__()
        self.backbone = Backbone(frames, base_filters, tuple(pos_dim), tuple(stage_blocks))
        self.cls_head = Head(self.backbone.net.out_channels, classes)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


def randomize(model, seed=0, calibrate_with=None):
    """Random weights and biases, random position embeddings, and BatchNorm statistics
    measured on `calibrate_with` (normalised clips) then perturbed, so a deep random
    network keeps its clips apart; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.2)
            elif isinstance(module, IOI):
                module.pos_embed.copy_(torch.randn(module.pos_embed.shape, generator=gen))
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=gen))
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
                module.num_batches_tracked.fill_(77)
        if calibrate_with is not None:
            bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            for module in bns:
                module.reset_running_stats()
                module.momentum = None  # cumulative: the batch's statistics
            model.train()
            model(calibrate_with)
            for module in bns:
                module.momentum = 0.1
                c = module.num_features
                std = module.running_var.sqrt()
                module.running_mean.add_(0.2 * std * torch.randn(c, generator=gen))
                module.running_var.mul_(0.6 + 0.8 * torch.rand(c, generator=gen))
                module.running_var.clamp_(min=0.3)
                module.num_batches_tracked.fill_(77)
    return model.eval()


def checkpoint(model, meta=True):
    """The model as mmaction2 saves a checkpoint: {"meta": ..., "state_dict": ...}."""
    out = {"state_dict": model.state_dict()}
    if meta:
        out["meta"] = {"epoch": 100, "mmaction_version": "1.2.0"}
    return out
