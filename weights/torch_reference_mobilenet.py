"""Independent PyTorch references of the published TSM-MobileNetV2 networks, one per
publisher, with the publishers' module structure and therefore their exact state-dict keys:

- MMRecognizer: mmaction2 Recognizer2D with MobileNetV2TSM (mmaction/models/backbones/
  mobilenet_v2.py, mobilenet_v2_tsm.py: mmcv ConvModules conv/bn/ReLU6; the shift wraps the
  first ConvModule of every block with a residual connection and an expansion conv) and
  TSMHead (avg pool, dropout, fc_cls, average over frames). Keys backbone.*,
  cls_head.fc_cls.*.
- MITTSN: the MIT temporal-shift-module TSN(base_model='mobilenetv2', is_shift=True)
  (archs/mobilenet_v2.py; ops/models.py wraps conv[0], the bare 1x1 Conv2d, of every block
  with len(conv) == 8 and use_res_connect; base_model.classifier becomes Dropout and
  new_fc classifies; consensus avg). Its state dict is saved with DataParallel's
  "module." prefix, as in the release.
- TorchvisionMobileNetV2: torchvision.models.mobilenet_v2 (ImageNet classifier: a plain
  image model, features.* / classifier.1.*).

All take NCHW frames already normalised, folded clip-major (rows n*T .. n*T+T-1: clip n).
"""

import collections

import torch
from torch import nn
import torch.nn.functional as F

SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]


def temporal_shift(x, frames, div=8):
    """Channels [0, c/div) come from frame t+1, [c/div, 2c/div) from t-1, zero at borders."""
    nt, c, h, w = x.shape
    v = x.reshape(nt // frames, frames, c, h, w)
    fold = c // div
    zero = torch.zeros_like(v[:, :1, :fold])
    ahead = torch.cat([v[:, 1:, :fold], zero], 1)
    behind = torch.cat([zero, v[:, :-1, fold:2 * fold]], 1)
    return torch.cat([ahead, behind, v[:, :, 2 * fold:]], 2).reshape(nt, c, h, w)


class Shift(nn.Module):
    """A wrapper like both publishers' TemporalShift: the wrapped module is `net`."""

    def __init__(self, net, frames):
        super().__init__()
        self.net, self.frames = net, frames

    def forward(self, x):
        return self.net(temporal_shift(x, self.frames))


# --- mmaction2 ------------------------------------------------------------------------

class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, stride=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)  # mmcv 'BN2d' = nn.BatchNorm2d, eps 1e-5
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MMInvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t, frames, shift):
        super().__init__()
        hidden = cin * t
        self.use_res_connect = stride == 1 and cin == cout
        mods = [ConvModule(cin, hidden, 1)] if t != 1 else []
        mods += [ConvModule(hidden, hidden, 3, stride, groups=hidden),
                 ConvModule(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*mods)
        if shift and len(self.conv) == 3 and self.use_res_connect:
            self.conv[0] = Shift(self.conv[0], frames)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MMBackbone(nn.Module):
    def __init__(self, frames, shift=True):
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, 2)
        cin = 32
        for s, (t, c, n, stride) in enumerate(SETTINGS, 1):
            blocks = []
            for j in range(n):
                blocks.append(MMInvertedResidual(cin, c, stride if j == 0 else 1, t, frames,
                                                 shift))
                cin = c
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.conv2 = ConvModule(cin, 1280, 1)

    def forward(self, x):
        x = self.conv1(x)
        for s in range(1, len(SETTINGS) + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.conv2(x)


class MMHead(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.fc_cls = nn.Linear(1280, classes)


class MMRecognizer(nn.Module):
    """backbone.* + cls_head.fc_cls.*; forward((N*T, 3, H, W)) -> clip logits (N, K)."""

    def __init__(self, frames=8, classes=10, shift=True):
        super().__init__()
        self.frames = frames
        self.backbone = MMBackbone(frames, shift)
        self.cls_head = MMHead(classes)

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1)
        logits = self.cls_head.fc_cls(self.cls_head.dropout(f))
        return logits.view(-1, self.frames, logits.shape[-1]).mean(1)


# --- MIT temporal-shift-module ----------------------------------------------------------

def _conv_bn_relu6(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


def _features(block):
    """The MobileNetV2 feature stack (stem, inverted residuals, 1280-wide last conv), with
    the publisher's block class (the module names, and so the keys, are the same)."""
    feats = [_conv_bn_relu6(3, 32, 3, 2)]
    cin = 32
    for t, c, n, stride in SETTINGS:
        for j in range(n):
            feats.append(block(cin, c, stride if j == 0 else 1, t))
            cin = c
    feats.append(_conv_bn_relu6(cin, 1280, 1, 1))
    return nn.Sequential(*feats)


class MITInvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res_connect = stride == 1 and cin == cout
        mods = []
        if t != 1:
            mods += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        mods += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                 nn.BatchNorm2d(hidden), nn.ReLU6(),
                 nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*mods)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MITMobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(MITInvertedResidual)
        self.classifier = nn.Dropout(0.5)  # TSN._prepare_tsn replaces the Linear

    def forward(self, x):
        return self.classifier(self.features(x).mean(3).mean(2))


class MITTSN(nn.Module):
    """base_model.* + new_fc.*; forward((N*T, 3, H, W)) -> clip logits (N, K)."""

    def __init__(self, frames=8, classes=10, shift=True):
        super().__init__()
        self.frames = frames
        self.base_model = MITMobileNetV2()
        if shift:
            for m in self.base_model.modules():
                if isinstance(m, MITInvertedResidual) and len(m.conv) == 8 and m.use_res_connect:
                    m.conv[0] = Shift(m.conv[0], frames)
        self.new_fc = nn.Linear(1280, classes)

    def forward(self, x):
        logits = self.new_fc(self.base_model(x))
        return logits.view(-1, self.frames, logits.shape[-1]).mean(1)

    def release_state_dict(self):
        """As the MIT checkpoints store it: DataParallel's module.* prefix."""
        return collections.OrderedDict(("module." + k, v) for k, v in self.state_dict().items())


# --- torchvision ----------------------------------------------------------------------

class TVInvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res_connect = stride == 1 and cin == cout
        mods = [_conv_bn_relu6(cin, hidden, 1, 1)] if t != 1 else []
        mods += [nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden,
                                         bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()),
                 nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*mods)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    """features.* + classifier.1.*; forward((N, 3, H, W)) -> image logits (N, K)."""

    def __init__(self, classes=1000):
        super().__init__()
        self.features = _features(TVInvertedResidual)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def randomize(model, seed=0, calibrate_with=None):
    """Random weights with non-trivial BN statistics.

    Deep random MobileNets wash the input out (every clip gives nearly the same logits) when
    the BN statistics ignore the real activations, so with `calibrate_with` (an input batch)
    the running statistics are first measured on it and then perturbed: the signal survives
    all 52 layers and the statistics still differ from any batch's. A few channels get a
    large BN scale so ReLU6's clip at 6 is exercised.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
        for module in bns:
            c = module.num_features
            scale = 0.3 + 0.9 * torch.rand(c, generator=gen)
            scale[torch.rand(c, generator=gen) < 0.05] *= 6.0
            module.weight.copy_(scale)
            module.bias.copy_(torch.randn(c, generator=gen) * 0.4)
            module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
        if calibrate_with is not None:
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
                # Near-constant channels would divide float32 rounding noise by ~sqrt(eps)
                # and drown the comparison; a floor keeps the network well conditioned.
                module.running_var.clamp_(min=0.3)
        for module in bns:
            module.num_batches_tracked.fill_(77)
    return model.eval()
