"""An independent PyTorch reference of MSNet (MotionSqueeze on TSM-ResNet-18/50), written
from /work/shared/ZOO_SPEC.md section 1 for testing keras_tin's conversion.

Module names reproduce the authors' code (arunos728/MotionSqueeze resnet_TSM.py and the TSN
wrapper of models.py, trained under DataParallel), so `Release(...).state_dict()` is a
checkpoint in that code's layout (no checkpoint was ever published):
    module.base_model.conv1.weight, module.base_model.bn1.*,
    module.base_model.bn2.*                       an unused BatchNorm2d(128) of the authors'
                                                  ResNet (never called in forward)
    module.base_model.chnl_reduction.{0.weight, 1.*}            1x1 conv C -> 64, BN
    module.base_model.flow_refinement.conv{1..4}.{0.weight, 1.*, 3.weight, 4.*}
                                                  DW conv, BN, (ReLU), 1x1 conv, BN
    module.base_model.layerL.b.{conv1, bn1, conv2, bn2[, conv3, bn3], downsample.0/1}.*
    module.new_fc.{weight (K, C, 1), bias}        the TSN wrapper's Conv1d classifier
`MSResNet(...)` alone is the bare network (keys without the prefixes, classifier fc1 as a
Conv1d); `MSResNet(..., flow=False)` without the MS module is a TSM-ResNet, and with
tsm=False too a plain torchvision ResNet (its state_dict() is an ImageNet-layout backbone
when fc1 is taken out: see `torchvision_state_dict`).

The correlation is written as explicit shifted sums over the 15x15 window (not Pinard's
extension). Input: NCHW frames folded clip-major, already normalised.
"""

import torch
from torch import nn
import torch.nn.functional as F

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}
PATCH = 15


def tsm(x, frames):
    """TSM 'zero' shift: the first C/8 channels take frame t+1, the next C/8 frame t-1."""
    nt, c, h, w = x.shape
    v = x.view(nt // frames, frames, c, h, w)
    fold = c // 8
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, frames, shift):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))
        self.frames, self.shift = frames, shift

    def forward(self, x):
        out = tsm(x, self.frames) if self.shift else x
        out = F.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, frames, shift):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = None
        if stride != 1 or inplanes != 4 * planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride,
                                                      bias=False), nn.BatchNorm2d(4 * planes))
        self.frames, self.shift = frames, shift

    def forward(self, x):
        out = tsm(x, self.frames) if self.shift else x
        out = F.relu(self.bn1(self.conv1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


def _separable(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cin, k, 1, k // 2, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class FlowRefinement(nn.Module):
    def __init__(self, out_channels):
        super().__init__()
        self.conv1 = _separable(3, 16, 7)
        self.conv2 = _separable(16, 32, 3)
        self.conv3 = _separable(32, 64, 3)
        self.conv4 = _separable(64, out_channels, 3)

    def forward(self, maps, frames):
        """maps (N*(T-1), 3, H, W) -> (N*T, C, H, W), the last pair repeated."""
        p, c, h, w = maps.shape
        v = maps.view(-1, frames - 1, c, h, w)
        v = torch.cat([v, v[:, -1:]], dim=1).reshape(-1, c, h, w)
        return self.conv4(self.conv3(self.conv2(self.conv1(v))))


def correlation(f1, f2, d=PATCH // 2):
    """(B, C, H, W) x2 -> (B, (2d+1)**2, H, W): out[:, ph*(2d+1)+pw, y, x] =
    sum_c f1[:, c, y, x] * f2[:, c, y + ph - d, x + pw - d], zero outside."""
    b, c, h, w = f1.shape
    padded = F.pad(f2, (d, d, d, d))
    out = []
    for ph in range(2 * d + 1):
        for pw in range(2 * d + 1):
            out.append((f1 * padded[:, :, ph:ph + h, pw:pw + w]).sum(1))
    return torch.stack(out, 1)


def l2norm(x):
    return x / torch.sqrt((x * x).sum(1, keepdim=True) + 1e-6)


def flow_maps(reduced, frames, sigma=5.0, temperature=100.0):
    """(N*T, 64, H, W) reduced features -> (N*(T-1), 3, H, W): flow_x, flow_y, confidence."""
    nt, c, h, w = reduced.shape
    v = reduced.view(nt // frames, frames, c, h, w)
    pre = v[:, :-1].reshape(-1, c, h, w)
    post = v[:, 1:].reshape(-1, c, h, w)
    corr = F.relu(correlation(l2norm(pre), l2norm(post)))  # (P, 225, H, W)
    confidence = corr.max(1)[0]
    idx = corr.argmax(1)
    iy = (idx // PATCH).float()[:, None]
    ix = (idx % PATCH).float()[:, None]
    grid = torch.arange(PATCH * PATCH)
    ph = (grid // PATCH).float().view(1, -1, 1, 1)
    pw = (grid % PATCH).float().view(1, -1, 1, 1)
    gauss = torch.exp(-((pw - ix) ** 2 + (ph - iy) ** 2) / (2 * sigma ** 2))
    prob = torch.softmax(temperature * corr * gauss, 1)
    d = PATCH // 2
    flow_x = (prob * (pw - d)).sum(1) / d
    flow_y = (prob * (ph - d)).sum(1) / d
    return torch.stack([flow_x, flow_y, confidence], 1)


class MSResNet(nn.Module):
    """TSM-ResNet with the MotionSqueeze module after layer2; forward gives per-frame
    logits (N*T, K) through the Conv1d classifier fc1 (or the features with fc1=None)."""

    def __init__(self, depth=50, frames=8, classes=1000, base_filters=64, flow=True,
                 shift=True):
        super().__init__()
        kind, counts = DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.frames, self.flow = frames, flow
        self.conv1 = nn.Conv2d(3, base_filters, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_filters)
        self.bn2 = nn.BatchNorm2d(128)  # present in the authors' ResNet, never used
        inplanes = base_filters
        for i, count in enumerate(counts):
            planes = base_filters * 2 ** i
            blocks = []
            for b in range(count):
                stride = (2 if i else 1) if b == 0 else 1
                blocks.append(block(inplanes, planes, stride, frames, shift))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        if flow:
            res3 = 2 * base_filters * block.expansion
            self.chnl_reduction = nn.Sequential(nn.Conv2d(res3, 64, 1, bias=False),
                                                nn.BatchNorm2d(64), nn.ReLU())
            self.flow_refinement = FlowRefinement(res3)
        self.fc1 = nn.Conv1d(inplanes, classes, 1)
        for m in self.modules():  # resnet_TSM.py init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def reduced(self, x):
        """The channel-reduced res3 features (N*T, 64, H, W) the MS module matches."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.chnl_reduction(self.layer2(self.layer1(x)))

    def maps(self, x):
        """The (N*(T-1), 3, H, W) flow/confidence maps of the MS module."""
        return flow_maps(self.reduced(x), self.frames)

    def correlation_volume(self, x):
        """The ReLU'd (N*(T-1), 225, H, W) correlation of consecutive frames."""
        r = self.reduced(x)
        nt, c, h, w = r.shape
        v = r.view(nt // self.frames, self.frames, c, h, w)
        return F.relu(correlation(l2norm(v[:, :-1].reshape(-1, c, h, w)),
                                  l2norm(v[:, 1:].reshape(-1, c, h, w))))

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer2(self.layer1(x))
        if self.flow:
            m = flow_maps(self.chnl_reduction(x), self.frames)
            x = x + self.flow_refinement(m, self.frames)  # no ReLU after the add
        x = self.layer4(self.layer3(x))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        feat = self.features(x)
        return self.fc1(feat[:, :, None])[:, :, 0]


class _TSN(nn.Module):
    """models.py TSN: base_model with fc1 replaced by Dropout, new_fc Conv1d (xavier, 0)."""

    def __init__(self, depth, frames, classes, base_filters):
        super().__init__()
        self.frames = frames
        self.base_model = MSResNet(depth, frames, classes, base_filters)
        feature_dim = self.base_model.fc1.in_channels
        self.base_model.fc1 = nn.Dropout(0.5)
        self.new_fc = nn.Conv1d(feature_dim, classes, 1)
        nn.init.xavier_uniform_(self.new_fc.weight)
        nn.init.constant_(self.new_fc.bias, 0)

    def forward(self, x):
        feat = self.base_model.features(x)
        logits = self.new_fc(feat[:, :, None])[:, :, 0]
        return logits.view(-1, self.frames, logits.shape[-1]).mean(1)


class Release(nn.Module):
    """The authors' TSN wrapper under DataParallel (keys module.base_model.*, module.new_fc.*):
    forward(x (N*T, 3, H, W)) -> clip logits (N, K), per-frame logits averaged over T."""

    def __init__(self, depth=50, frames=8, classes=174, base_filters=64):
        super().__init__()
        self.module = _TSN(depth, frames, classes, base_filters)

    def forward(self, x):
        return self.module(x)

    def maps(self, x):
        return self.module.base_model.maps(x)

    def correlation_volume(self, x):
        return self.module.base_model.correlation_volume(x)


def torchvision_state_dict(model):
    """A plain ResNet (MSResNet(flow=False, shift=False)) as a torchvision ImageNet file:
    the unused bn2 dropped, fc1 (K, C, 1) as fc (K, C)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("bn2."):
            continue
        if key.startswith("fc1."):
            key = "fc." + key[4:]
            value = value[..., 0] if value.ndim == 3 else value
        out[key] = value
    return out


def randomize(model, seed=0):
    """Random weights with non-trivial BN statistics (every BN, the MS module's included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv1d)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Conv1d) else 2.0
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
