"""An independent PyTorch TCPNet (Temporal-attentive Covariance Pooling, NeurIPS 2021) with
the module structure of the official code (ZilinGao/Temporal-attentive-Covariance-Pooling-
Networks-for-Video-Recognition: ops/models.py TSN wrapper, ops/torchvision/resnet.py and
preact_resnet.py, ops/TCP/*.py, ops/MPNCOV/MPNCOV.py), so that `checkpoint()` has the
published checkpoints' keys, written from /work/shared/ZOO_SPEC.md section 11:

    module.base_model.{conv1, bn1, layerL.b.*}          the ResNet (layer4 stride 1)
    module.base_model.TCP.layer_reduce{1,2}.weight, .layer_reduce_bn{1,2}.*
    module.base_model.TCP.TCP_att.TSA.{conv_phi_1, conv_phi_2, conv_phi0}.{weight, bias},
        .TSA.norm.*
    module.base_model.TCP.TCP_att.TCA.{g1, g2}.{weight, bias}
    module.base_model.TCP.TCP_att.conv_1d.{weight (d, d, k, 1, 1), bias}
    module.new_fc.{weight (classes, d(d+1)/2), bias}

`old_style_keys()` rewrites them to the repository's older names (ops/keys_mapping.py read
backwards): TCP. -> layer4.iSQRT., TCA.g1/g2 -> att_module.conv_1/conv_2, TSA.conv_phi_1 /
conv_phi_2 / conv_phi0 -> att_module.sp_att.conv_theta / conv_phi / conv_g, TSA.* ->
att_module.sp_att.*, TCP_att.* -> att_module.*, new_fc -> base_model.classifier.

Backbones: "resnet" (torchvision v1.5 bottlenecks, BN eps 1e-5) at depth 50 / 101 / 152,
and "preact" (the release's ResNet-152: pre-activation bottlenecks with BN eps 2e-5, an
input BN `bn_data`, 1x1 shortcut convs without BN applied to the block's pre-activated
input, a final BN `bn2` + ReLU). Here every computation is written out once:

- covariance: (1/M) X (I - 11'/M) X' over M = T*H*W positions (the spec's matrix form, not
  a centring), X (N, d, M) in frame-major order;
- square root: the coupled Newton-Schulz iteration of the spec, 3 iterations by default;
- upper triangle: torch.triu_indices (row-major);
- TSA / TCA / circular conv: x1 / x2 by index lists, the circular pad by index lists
  (not padding_mode), softmax over the last axis.

Input: (N, T, 3, H, W), already normalised. `width` narrows the backbone for tests (64 in
the released networks); the TCP head's widths (256, 128) are arguments too.
"""

import torch
from torch import nn
import torch.nn.functional as F

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=2e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=2e-5)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=2e-5)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False))

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        y = self.conv1(pre)
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + shortcut


class TSA(nn.Module):
    def __init__(self, dim, frames):
        super().__init__()
        self.frames = frames
        self.conv_phi_1 = nn.Conv2d(dim, dim, 1)
        self.conv_phi_2 = nn.Conv2d(dim, dim, 1)
        self.conv_phi0 = nn.Conv2d(dim, dim, 1)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x):
        nt, c, h, w = x.shape
        t = self.frames
        prev = [max(i - 1, 0) for i in range(t)]
        clips = x.reshape(nt // t, t, c, h, w)
        x1 = clips[:, prev]
        x2 = x1[:, prev]
        q = self.conv_phi_1(x1.reshape(nt, c, h, w)).reshape(nt, c, h * w)
        k = self.conv_phi_2(x2.reshape(nt, c, h, w)).reshape(nt, c, h * w)
        v = self.conv_phi0(x).reshape(nt, c, h * w)
        attention = torch.softmax(torch.bmm(q.transpose(1, 2), k) / c ** 0.5, dim=2)  # (nt, a, b)
        out = torch.bmm(v, attention.transpose(1, 2)).reshape(nt, c, h, w)  # sum_b A[a,b] v[b]
        return x + self.norm(out)


class TCA(nn.Module):
    def __init__(self, dim, frames):
        super().__init__()
        self.frames = frames
        self.g1 = nn.Conv2d(dim, dim * 4, 1)
        self.g2 = nn.Conv2d(dim * 4, dim, 1)

    def gate(self, v):
        return torch.sigmoid(self.g2(F.relu(self.g1(v))))

    def forward(self, x, x_att):
        nt, c = x.shape[:2]
        t = self.frames
        z = x.mean(dim=(2, 3)).reshape(nt // t, t, c)
        back1 = [(i - 1) % t for i in range(t)]
        back2 = [(i - 2) % t for i in range(t)]
        d1 = (z - z[:, back1]).reshape(nt, c, 1, 1)
        d2 = ((z - z[:, back2]) * 0.5).reshape(nt, c, 1, 1)
        return x_att * (self.gate(d1) + self.gate(d2)) * 0.5


class TCPAttention(nn.Module):
    def __init__(self, dim, frames):
        super().__init__()
        self.frames = frames
        self.k = frames // 2 + 1
        self.TSA = TSA(dim, frames)
        self.TCA = TCA(dim, frames)
        self.conv_1d = nn.Conv3d(dim, dim, (self.k, 1, 1))  # circular padding done by hand

    def forward(self, x):
        nt, c, h, w = x.shape
        t, p = self.frames, (self.k - 1) // 2
        y = self.TCA(x, self.TSA(x))
        y = y.reshape(nt // t, t, c, h, w).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        index = [(i - p) % t for i in range(t + 2 * p)]
        y = self.conv_1d(y[:, :, index])
        y = y.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)
        return F.relu(y + x)


def covariance(x, frames):
    """x (N*T, d, H, W) -> (N, d, d), (1/M) X (I - 11'/M) X' over M = T*H*W."""
    nt, d, h, w = x.shape
    n = nt // frames
    x = x.reshape(n, frames, d, h * w).permute(0, 2, 1, 3).reshape(n, d, frames * h * w)
    m = x.shape[-1]
    i_hat = (torch.eye(m, dtype=x.dtype) - torch.full((m, m), 1.0 / m, dtype=x.dtype)) / m
    return x @ i_hat @ x.transpose(1, 2)


def isqrt(s, iterations=3, eps=1e-5):
    """The spec's iSQRT: trace pre-normalisation, coupled Newton-Schulz, sqrt(trace)."""
    d = s.shape[-1]
    eye3 = 3.0 * torch.eye(d, dtype=s.dtype).expand_as(s)
    trace = torch.diagonal(s, dim1=1, dim2=2).sum(-1)
    a = s / (trace[:, None, None] + eps)
    zy = 0.5 * (eye3 - a)
    if iterations < 2:
        return (a @ zy) * trace.sqrt()[:, None, None]
    y, z = a @ zy, zy
    for _ in range(iterations - 2):
        zy = 0.5 * (eye3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (eye3 - z @ y) * trace.sqrt()[:, None, None]


def upper_triangle(s):
    rows, cols = torch.triu_indices(s.shape[-1], s.shape[-1])
    return s[:, rows, cols]


class TCP(nn.Module):
    def __init__(self, dim_in, frames, dim_inner=256, dim=128, iterations=3):
        super().__init__()
        self.frames, self.iterations = frames, iterations
        self.layer_reduce1 = nn.Conv2d(dim_in, dim_inner, 1, bias=False)
        self.layer_reduce_bn1 = nn.BatchNorm2d(dim_inner)
        self.layer_reduce2 = nn.Conv2d(dim_inner, dim, 1, bias=False)
        self.layer_reduce_bn2 = nn.BatchNorm2d(dim)
        self.TCP_att = TCPAttention(dim, frames)

    def forward(self, x):
        x = F.relu(self.layer_reduce_bn1(self.layer_reduce1(x)))
        x = F.relu(self.layer_reduce_bn2(self.layer_reduce2(x)))
        x = self.TCP_att(x)
        return upper_triangle(isqrt(covariance(x, self.frames), self.iterations))


class ResNet(nn.Module):
    def __init__(self, depth, frames, width=64, backbone="resnet", tcp_inner=256, tcp_dim=128):
        super().__init__()
        self.preact = backbone == "preact"
        block = PreActBottleneck if self.preact else Bottleneck
        eps = 2e-5 if self.preact else 1e-5
        if self.preact:
            self.bn_data = nn.BatchNorm2d(3, eps=eps)
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=eps)
        inplanes = width
        for i, count in enumerate(DEPTHS[depth]):
            planes = width * 2 ** i
            layers = []
            for b in range(count):
                stride = 2 if b == 0 and i in (1, 2) else 1  # layer4 stride 1 (TCPNet)
                layers.append(block(inplanes, planes, stride))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        if self.preact:
            self.bn2 = nn.BatchNorm2d(inplanes, eps=eps)
        self.TCP = TCP(inplanes, frames, tcp_inner, tcp_dim)

    def forward(self, x):
        if self.preact:
            x = self.bn_data(x)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        if self.preact:
            x = F.relu(self.bn2(x))
        return self.TCP(x)


class TCPNet(nn.Module):
    """base_model + new_fc; forward(x (N, T, 3, H, W)) -> clip logits (N, classes)."""

    def __init__(self, classes, depth=50, frames=8, width=64, backbone="resnet",
                 tcp_inner=256, tcp_dim=128):
        super().__init__()
        self.base_model = ResNet(depth, frames, width, backbone, tcp_inner, tcp_dim)
        self.new_fc = nn.Linear(tcp_dim * (tcp_dim + 1) // 2, classes)

    def forward(self, x):
        n, t = x.shape[:2]
        return self.new_fc(self.base_model(x.reshape((n * t,) + x.shape[2:])))


def randomize(model, seed=0, calibrate_with=None):
    """Random weights, non-trivial BN statistics, and the zero-initialised parts (TSA's BN
    gamma, the temporal conv) made non-zero; returns the model in eval mode. With
    `calibrate_with` (normalised clips (N, T, 3, H, W)) the running statistics are first
    measured on it, then perturbed, so the clips stay apart at the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) or "TCA" in name else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if name.endswith("conv_1d"):
                    module.weight.mul_(0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.2)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.3 + 0.5 * torch.rand(c, generator=gen))
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
                module.num_batches_tracked.fill_(77)
        if calibrate_with is not None:
            bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            for module in bns:
                module.reset_running_stats()
                module.momentum = None
            model.train()
            model(calibrate_with)
            for module in bns:
                module.momentum = 0.1
                c = module.num_features
                module.running_mean.add_(torch.randn(c, generator=gen) * 0.05)
                module.running_var.mul_(0.8 + 0.4 * torch.rand(c, generator=gen))
    return model.eval()


def checkpoint(model):
    """The release's form: {'state_dict': {'module.' + key: tensor}} (DataParallel)."""
    return {"epoch": 1, "arch": "resnet50",
            "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}


_OLD_NAMES = (("TCP_att.TCA.g1.", "att_module.conv_1."), ("TCP_att.TCA.g2.", "att_module.conv_2."),
              ("TCP_att.TSA.conv_phi_1.", "att_module.sp_att.conv_theta."),
              ("TCP_att.TSA.conv_phi_2.", "att_module.sp_att.conv_phi."),
              ("TCP_att.TSA.conv_phi0.", "att_module.sp_att.conv_g."),
              ("TCP_att.TSA.", "att_module.sp_att."), ("TCP_att.", "att_module."))


def old_style_keys(state_dict):
    """The repository's older spellings (ops/keys_mapping.py, read backwards)."""
    out = {}
    for key, value in state_dict.items():
        new = key
        if ".TCP." in new:
            new = new.replace("base_model.TCP.", "base_model.layer4.iSQRT.")
            for now, old in _OLD_NAMES:
                if now in new:
                    new = new.replace(now, old)
                    break
        new = new.replace("module.new_fc.", "module.base_model.classifier.")
        out[new] = value
    return out
