"""An independent PyTorch TAda2D-ResNet-50 with the module structure of the publisher
(alibaba-mmai-research/TAdaConv: BaseVideoModel -> ResNet3D backbone + BaseHead), so that
its state_dict() has the published checkpoints' keys (keras_tin/weights/layouts_tada.py),
written from ZOO_SPEC.md section 5:

- backbone.conv1: stem, Conv3d (1, 7, 7) stride (1, 2, 2) + BN + ReLU, no max-pool;
- backbone.conv2..conv5: stages of bottlenecks res_1..res_n, the first block of EVERY
  stage (conv2 too) with stride (1, 2, 2) on its 3x3 conv and its 1x1 shortcut;
- a block: short_cut (+ short_cut_bn) when the shape changes, and conv_branch:
  a (1x1x1) + a_bn + ReLU -> b (TAdaConv2d, 3x3, stride) with alpha = b_rf(a output)
  -> b_bn(y) + b_avgpool_bn(AvgPool3d((3, 1, 1), 1, (1, 0, 0))(y)) -> ReLU
  -> c (1x1x1, 4x) + c_bn; the block adds and applies ReLU;
- b_rf (route function): g (Conv3d 1x1x1, bias) on the global mean, added to the
  per-frame spatial means, a (Conv3d (3,1,1) -> C/4, bias) + bn + ReLU, b (Conv3d (3,1,1)
  -> C, no bias); alpha = b(...) + 1;
- TAdaConv2d here is the publisher's form of the operator: per (clip, frame) kernels
  alpha[n, :, t] * W over the input channels, applied as ONE grouped conv with N*T
  groups (keras_tin computes it as channel scaling + a shared conv instead);
- head.out: Linear on the global (T, H, W) average of the last stage; softmax left out
  (logits).

Input: (N, 3, T, H, W), already normalised. `base_filters` narrows the network for tests
(64 in TAda2D-R50); the route function reduces by 4, so base_filters must be >= 4.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

STAGE_BLOCKS = (3, 4, 6, 3)


class RouteFunc(nn.Module):
    """alpha (N, C, T, 1, 1) from x (N, C, T, H, W)."""

    def __init__(self, channels, ratio=4):
        super().__init__()
        self.g = nn.Conv3d(channels, channels, 1)
        self.a = nn.Conv3d(channels, channels // ratio, (3, 1, 1), padding=(1, 0, 0))
        self.bn = nn.BatchNorm3d(channels // ratio)
        self.b = nn.Conv3d(channels // ratio, channels, (3, 1, 1), padding=(1, 0, 0),
                           bias=False)
        nn.init.zeros_(self.b.weight)

    def forward(self, x):
        per_frame = x.mean(dim=(3, 4), keepdim=True)  # (N, C, T, 1, 1)
        clip = x.mean(dim=(2, 3, 4), keepdim=True)  # (N, C, 1, 1, 1)
        h = F.relu(self.bn(self.a(per_frame + self.g(clip))))
        return self.b(h) + 1.0


class TAdaConv2d(nn.Module):
    """Per-(clip, frame) kernels scaled over the input channels, as one grouped conv."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(1, 1, cout, cin, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x, alpha):
        n, cin, t, h, w = x.shape
        cout = self.weight.shape[2]
        frames = x.permute(0, 2, 1, 3, 4).reshape(1, n * t * cin, h, w)
        # alpha (N, C, T, 1, 1) -> (N, T, 1, C, 1, 1): one scale per input channel
        scale = alpha.permute(0, 2, 1, 3, 4).reshape(n, t, 1, cin, 1, 1)
        kernels = (scale * self.weight).reshape(n * t * cout, cin, 3, 3)
        y = F.conv2d(frames, kernels, stride=self.stride, padding=1, groups=n * t)
        return y.reshape(n, t, cout, y.shape[-2], y.shape[-1]).permute(0, 2, 1, 3, 4)


class TAdaBranch(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.a = nn.Conv3d(cin, planes, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(planes)
        self.b = TAdaConv2d(planes, planes, stride)
        self.b_rf = RouteFunc(planes)
        self.b_bn = nn.BatchNorm3d(planes)
        self.b_avgpool = nn.AvgPool3d((3, 1, 1), stride=1, padding=(1, 0, 0))
        self.b_avgpool_bn = nn.BatchNorm3d(planes)
        nn.init.zeros_(self.b_avgpool_bn.weight)
        nn.init.zeros_(self.b_avgpool_bn.bias)
        self.c = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(planes * 4)

    def forward(self, x):
        x = F.relu(self.a_bn(self.a(x)))
        y = self.b(x, self.b_rf(x))
        y = F.relu(self.b_bn(y) + self.b_avgpool_bn(self.b_avgpool(y)))
        return self.c_bn(self.c(y))


class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        if stride != 1 or cin != planes * 4:
            self.short_cut = nn.Conv3d(cin, planes * 4, 1, stride=(1, stride, stride),
                                       bias=False)
            self.short_cut_bn = nn.BatchNorm3d(planes * 4)
        self.conv_branch = TAdaBranch(cin, planes, stride)

    def forward(self, x):
        skip = self.short_cut_bn(self.short_cut(x)) if hasattr(self, "short_cut") else x
        return F.relu(skip + self.conv_branch(x))


class Stage(nn.Module):
    def __init__(self, cin, planes, blocks):
        super().__init__()
        self.count = blocks
        for i in range(blocks):
            self.add_module(f"res_{i + 1}", Block(cin if i == 0 else planes * 4, planes,
                                                  2 if i == 0 else 1))

    def forward(self, x):
        for i in range(self.count):
            x = getattr(self, f"res_{i + 1}")(x)
        return x


class Stem(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.a = nn.Conv3d(3, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                           bias=False)
        self.a_bn = nn.BatchNorm3d(width)

    def forward(self, x):
        return F.relu(self.a_bn(self.a(x)))


class Backbone(nn.Module):
    def __init__(self, base_filters=64, stage_blocks=STAGE_BLOCKS):
        super().__init__()
        self.conv1 = Stem(base_filters)
        cin = base_filters
        for s, blocks in enumerate(stage_blocks):
            planes = base_filters * 2 ** s
            self.add_module(f"conv{s + 2}", Stage(cin, planes, blocks))
            cin = planes * 4
        self.out_channels = cin

    def forward(self, x):
        x = self.conv1(x)
        for s in range(2, 6):
            x = getattr(self, f"conv{s}")(x)
        return x


class Head(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.out = nn.Linear(channels, classes)

    def forward(self, x):
        return self.out(x.mean(dim=(2, 3, 4)))


class TAda2DResNet(nn.Module):
    """TAda2D-ResNet-50 (base_filters 64) returning logits for (N, 3, T, H, W) clips."""

    def __init__(self, classes=400, base_filters=64):
        super().__init__()
        if base_filters < 4:
            raise ValueError(f"base_filters must be >= 4. Received: {base_filters}")
        self.backbone = Backbone(base_filters)
        self.head = Head(self.backbone.out_channels, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def randomize(model, seed=0, calibrate_with=None):
    """Random weights, non-trivial BN statistics, and the zero-initialised parts (route
    functions' last conv, pool BNs) made non-zero; returns the model in eval mode.

    A deep random network washes its input out (every clip gives nearly the same logits)
    unless the BN statistics follow the activations, so with `calibrate_with` (a batch of
    normalised clips, N x 3 x T x H x W) the running statistics are measured on it and then
    perturbed: the clips stay apart and the statistics still differ from the batch's."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if name.endswith("b_rf.b"):  # alpha = 1 + O(0.3): clearly non-trivial
                    module.weight.mul_(0.3)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.3)
            elif isinstance(module, TAdaConv2d):
                fan_in = module.weight[0, 0, 0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm3d):
                c = module.num_features
                module.weight.copy_(0.2 + 0.5 * torch.rand(c, generator=gen))
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
                module.num_batches_tracked.fill_(123)
        if calibrate_with is not None:
            bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
            for module in bns:
                module.reset_running_stats()
                module.momentum = None  # cumulative average: the batch's statistics
            model.train()
            model(calibrate_with)
            for module in bns:
                module.momentum = 0.1
                c = module.num_features
                std = module.running_var.sqrt()
                module.running_mean.add_(0.2 * std * torch.randn(c, generator=gen))
                module.running_var.mul_(0.6 + 0.8 * torch.rand(c, generator=gen))
                # Near-constant channels (dead after a ReLU, few positions deep in the
                # network) would divide rounding noise by ~sqrt(eps): a floor keeps the
                # network well conditioned.
                module.running_var.clamp_(min=0.3)
                module.num_batches_tracked.fill_(123)
    return model.eval()


def checkpoint(model, epoch=100):
    """The model wrapped as the publisher's checkpoint code saves it."""
    return {"epoch": epoch, "model_state": model.state_dict(),
            "cfg": "MODEL:\n  NAME: TAda2D\n"}
