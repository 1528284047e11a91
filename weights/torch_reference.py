"""An independent PyTorch reference of TIN / TSM / TSN ResNets, written from docs/TIN_SPEC.md,
with optional non-local blocks as mmaction2's non-local TSM wraps them (NL3DWrapper).

Module names reproduce the OpenMMLab (mmaction2) state-dict keys, so a state dict of
`Recognizer` is an OpenMMLab-layout checkpoint; `to_authors_layout` renames it to the
MIT TSM / X-Temporal TIN release layout. Input: NCHW frames, folded clip-major
(rows n*T .. n*T+T-1 are clip n), already normalised.
"""

import collections

import torch
from torch import nn
import torch.nn.functional as F


class ConvModule(nn.Module):
    """conv (+ bn) like mmcv's ConvModule: keys <name>.conv.*, <name>.bn.*."""

    def __init__(self, conv, channels):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(channels, eps=1e-5)

    def forward(self, x):
        return self.bn(self.conv(x))


class OffsetNet(nn.Module):
    def __init__(self, channels, frames):
        super().__init__()
        self.conv = nn.Conv1d(channels, 1, 3, padding=1)
        self.fc1 = nn.Linear(frames, frames)
        self.fc2 = nn.Linear(frames, 2)

    def forward(self, desc):  # desc (N, F, T)
        z = self.conv(desc)[:, 0]  # (N, T)
        z = self.fc2(torch.relu(self.fc1(z)))  # (N, 2)
        return 4.0 * (torch.sigmoid(z) - 0.5)


class WeightNet(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv1d(channels, 2, 3, padding=1)

    def forward(self, desc):  # (N, F, T) -> (N, T, 2)
        return 2.0 * torch.sigmoid(self.conv(desc)).transpose(1, 2)


class Interlace(nn.Module):
    """docs/TIN_SPEC.md: descriptor -> offsets/weights -> tent-kernel shift -> weighting."""

    def __init__(self, channels, frames, shift_div=4):
        super().__init__()
        self.frames, self.fold = frames, channels // shift_div
        self.offset_net = OffsetNet(self.fold, frames)
        self.weight_net = WeightNet(self.fold)

    def forward(self, x):
        nt, c, h, w = x.shape
        t, f = self.frames, self.fold
        n = nt // t
        part = x[:, :f].reshape(n, t, f, h, w)
        desc = part.mean(dim=(3, 4)).transpose(1, 2)  # (N, F, T)
        o = self.offset_net(desc)  # (N, 2)
        wt = self.weight_net(desc)  # (N, T, 2)
        offsets = torch.stack([o[:, 0], o[:, 1], -o[:, 0], -o[:, 1]], 1)  # (N, 4)
        weights = torch.stack([wt[..., 0], wt[..., 1], wt[..., 0], wt[..., 1]], 2)  # (N, T, 4)
        grid = torch.arange(t, dtype=x.dtype)
        # kernel[n, g, t, s] = max(0, 1 - |t - s - b[n, g]|)
        diff = grid[:, None] - grid[None, :]  # (T, T): t - s
        kernel = torch.clamp(1 - (diff[None, None] - offsets[:, :, None, None]).abs(), min=0)
        groups = part.reshape(n, t, 4, f // 4, h, w)
        shifted = torch.einsum("ngts,nsgchw->ntgchw", kernel, groups)
        shifted = shifted * weights[:, :, :, None, None, None]
        out = torch.cat([shifted.reshape(nt, f, h, w), x[:, f:]], 1)
        return out


class InterlaceConv(nn.Module):
    """keys conv1.conv.net1.* (the TIN module) and conv1.conv.net2.weight (the conv)."""

    def __init__(self, conv, channels, frames):
        super().__init__()
        self.net1 = Interlace(channels, frames)
        self.net2 = conv

    def forward(self, x):
        return self.net2(self.net1(x))


class ShiftConv(nn.Module):
    """TSM (shift_div 8): [0, fold) from t+1, [fold, 2 fold) from t-1; key conv.net.weight."""

    def __init__(self, conv, frames, shift_div=8):
        super().__init__()
        self.net, self.frames, self.shift_div = conv, frames, shift_div

    def forward(self, x):
        nt, c, h, w = x.shape
        t = self.frames
        fold = c // self.shift_div
        v = x.reshape(nt // t, t, c, h, w)
        out = torch.zeros_like(v)
        out[:, :-1, :fold] = v[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
        return self.net(out.reshape(nt, c, h, w))


def _first_conv(conv, temporal, channels, frames):
    if temporal == "tin":
        return InterlaceConv(conv, channels, frames)
    if temporal == "tsm":
        return ShiftConv(conv, frames)
    return conv


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, temporal, frames):
        super().__init__()
        conv = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.conv1 = ConvModule(_first_conv(conv, temporal, inplanes, frames), planes)
        self.conv2 = ConvModule(nn.Conv2d(planes, planes, 3, stride, 1, bias=False), planes)
        self.conv3 = ConvModule(nn.Conv2d(planes, planes * 4, 1, bias=False), planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = ConvModule(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), planes * 4)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        y = self.conv3(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, temporal, frames):
        super().__init__()
        conv = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.conv1 = ConvModule(_first_conv(conv, temporal, inplanes, frames), planes)
        self.conv2 = ConvModule(nn.Conv2d(planes, planes, 3, 1, 1, bias=False), planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = ConvModule(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                         planes)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = self.conv2(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Conv3dUnit(nn.Module):
    """A 1x1x1 Conv3d with bias inside a ConvModule without norm: keys <name>.conv.*."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=True)

    def forward(self, x):
        return self.conv(x)


class Conv3dBN(nn.Module):
    """Bias-free 1x1x1 Conv3d then BatchNorm3d: keys <name>.conv.weight, <name>.bn.*."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5)

    def forward(self, x):
        return self.bn(self.conv(x))


class NonLocal3d(nn.Module):
    """The non-local block of mmaction2's non-local TSM configs (mmcv NonLocal3d with
    reduction 2, sub_sample=True, use_scale=False, BN3d after conv_out), on (N, C, T, H, W).

    Keys: g.0.conv.*, theta.conv.*, phi.0.conv.* (not in 'gaussian'), conv_out.conv.weight,
    conv_out.bn.*. Keys and values are max-pooled (1, 2, 2); queries are every position.
    """

    def __init__(self, channels, mode):
        super().__init__()
        assert mode in ("embedded_gaussian", "dot_product", "gaussian"), mode
        self.mode, self.inter = mode, max(channels // 2, 1)
        pool = nn.MaxPool3d((1, 2, 2))
        self.g = nn.Sequential(Conv3dUnit(channels, self.inter), pool)
        if mode == "gaussian":
            self.phi = pool
        else:
            self.theta = Conv3dUnit(channels, self.inter)
            self.phi = nn.Sequential(Conv3dUnit(channels, self.inter), pool)
        self.conv_out = Conv3dBN(self.inter, channels)
        # mmcv's init: N(0, 0.01) embeddings with zero bias; conv_out's BN at zero (identity).
        for name, p in self.named_parameters():
            if name.endswith("conv.weight") and not name.startswith("conv_out"):
                nn.init.normal_(p, std=0.01)
            elif name.startswith(("g.", "theta.", "phi.")) and name.endswith("bias"):
                nn.init.zeros_(p)
        nn.init.zeros_(self.conv_out.bn.weight)
        nn.init.zeros_(self.conv_out.bn.bias)

    def forward(self, x):
        n, c, t, h, w = x.shape
        queries = x if self.mode == "gaussian" else self.theta(x)
        keys, values = self.phi(x), self.g(x)
        q = queries.flatten(2)  # (N, Cq, THW)
        k = keys.flatten(2)  # (N, Cq, Thw)
        v = values.flatten(2)  # (N, inter, Thw)
        f = torch.einsum("ncq,nck->nqk", q, k)
        if self.mode == "dot_product":
            f = f / k.shape[-1]
        else:
            f = torch.softmax(f, dim=-1)
        y = torch.einsum("nqk,nck->ncq", f, v).reshape(n, self.inter, t, h, w)
        return x + self.conv_out(y)


class NonLocalWrapper(nn.Module):
    """mmaction2's NL3DWrapper: keys block.* (the residual block) and non_local_block.*;
    the non-local block runs on the block's output, frames unfolded to (N, C, T, H, W)."""

    def __init__(self, block, channels, frames, mode):
        super().__init__()
        self.block, self.frames = block, frames
        self.non_local_block = NonLocal3d(channels, mode)

    def forward(self, x):
        x = self.block(x)
        nt, c, h, w = x.shape
        clips = x.reshape(nt // self.frames, self.frames, c, h, w).permute(0, 2, 1, 3, 4)
        out = self.non_local_block(clips)
        return out.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


# The published non-local TSM-R50 configs' ResNetTSM(non_local=...).
NON_LOCAL_BLOCKS = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))

DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class Backbone(nn.Module):
    def __init__(self, depth, temporal, frames, non_local=None,
                 non_local_blocks=NON_LOCAL_BLOCKS):
        super().__init__()
        block, counts = DEPTHS[depth]
        self.conv1 = ConvModule(nn.Conv2d(3, 64, 7, 2, 3, bias=False), 64)
        inplanes = 64
        # The published TSM code (make_temporal_shift, 'blockres'): n_round = 2 when layer3
        # has 23 or more blocks, then only blocks with i % n_round == 0 of every stage shift.
        # TIN's code has no such rule.
        n_round = 2 if temporal == "tsm" and counts[2] >= 23 else 1
        for i, count in enumerate(counts):
            planes = 64 * 2 ** i
            blocks = []
            for b in range(count):
                stride = 2 if (b == 0 and i > 0) else 1
                kind = temporal if b % n_round == 0 else "tsn"
                blocks.append(block(inplanes, planes, stride, kind, frames))
                inplanes = planes * block.expansion
            if non_local is not None:  # mmaction2 make_non_local: after the temporal shift
                for b, wrap in enumerate(non_local_blocks[i]):
                    if wrap:
                        blocks[b] = NonLocalWrapper(blocks[b], inplanes, frames, non_local)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


class Head(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.fc_cls = nn.Linear(channels, classes)


class Recognizer(nn.Module):
    """backbone.* + cls_head.fc_cls.*; forward(x (N*T, 3, H, W)) -> clip logits (N, K)."""

    def __init__(self, temporal="tin", depth=50, frames=8, classes=10, non_local=None,
                 non_local_blocks=NON_LOCAL_BLOCKS):
        super().__init__()
        self.frames = frames
        self.backbone = Backbone(depth, temporal, frames, non_local, non_local_blocks)
        self.cls_head = Head(self.backbone.out_channels, classes)

    def forward(self, x):
        feats = self.backbone(x).mean(dim=(2, 3))  # (N*T, C)
        logits = self.cls_head.fc_cls(feats)  # per-frame logits
        return logits.reshape(-1, self.frames, logits.shape[-1]).mean(1)


def randomize(model, seed=0):
    """Random weights with non-trivial BN statistics (scaled to keep activations O(1))."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear)):
                fan_in = module.weight[0].numel()
                gain = 1.0 if isinstance(module, nn.Linear) else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (gain / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
                c = module.num_features
                module.weight.copy_(0.2 + 0.5 * torch.rand(c, generator=gen))
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen) * 1.5)
                module.num_batches_tracked.fill_(123)
        for module in model.modules():
            if isinstance(module, NonLocal3d) and module.mode == "dot_product":
                # Unnormalised dot products grow with the cube of the features, and five
                # stacked blocks of them overflow float32 with the scale above: shrink theta
                # and phi so each block's branch stays of the order of its input.
                for p in (*module.theta.parameters(), *module.phi.parameters()):
                    p.mul_(0.25)
    return model.eval()


def to_authors_layout(state_dict):
    """OpenMMLab keys -> MIT TSM / X-Temporal TIN keys (module.base_model.*, module.new_fc.*)."""
    renames = [
        ("conv1.conv.net1.offset_net.conv.", "conv1.net1.biasnet.net.conv."),
        ("conv1.conv.net1.offset_net.fc1.", "conv1.net1.biasnet.net.fc."),
        ("conv1.conv.net1.offset_net.fc2.", "conv1.net1.biasnet.net.lastlayer."),
        ("conv1.conv.net1.weight_net.conv.", "conv1.net1.weightnet.net.lastlayer."),
        ("conv1.conv.net2.", "conv1.net2."),
        ("conv1.conv.net.", "conv1.net."),
        ("downsample.conv.", "downsample.0."),
        ("downsample.bn.", "downsample.1."),
    ]
    out = collections.OrderedDict()
    for key, value in state_dict.items():
        if key.startswith("cls_head.fc_cls."):
            out["module.new_fc." + key[len("cls_head.fc_cls."):]] = value
            continue
        name = key[len("backbone."):]
        for old, new in renames:
            name = name.replace(old, new)
        if name.startswith("conv1.conv."):
            name = "conv1." + name[len("conv1.conv."):]
        elif name.startswith("conv1.bn."):
            name = "bn1." + name[len("conv1.bn."):]
        else:
            # layerL.b.convI.conv.weight -> layerL.b.convI.weight; convI.bn.* -> bnI.*
            parts = name.split(".")
            if len(parts) > 3 and parts[2].startswith("conv") and parts[3] in ("conv", "bn"):
                i = parts[2][len("conv"):]
                head = parts[2] if parts[3] == "conv" else f"bn{i}"
                name = ".".join(parts[:2] + [head] + parts[4:])
        out["module.base_model." + name] = value
    return out
