"""An independent PyTorch R(2+1)D-50 with the module structure of pytorchvideo's
`create_r2plus1d` (facebookresearch/pytorchvideo, pytorchvideo/models/r2plus1d.py with
resnet.py, stem.py, head.py and layers/convolutions.py), so that its state_dict() has the
keys of the published `R2PLUS1D_16x4_R50.pyth` (keras_tin/weights/layouts_pytorchvideo.py).
Written from ZOO_SPEC.md section 9 and that code, not imported from it (pytorchvideo is not
a dependency):

- blocks.0 (ResNetBasicStem): conv Conv3d(3 -> 64, (1, 7, 7), stride (1, 2, 2),
  padding (0, 3, 3), no bias) + norm BatchNorm3d + ReLU, no pool;
- blocks.1..4 (ResStage, res_blocks.i, depths 3/4/6/3 for R50): bottleneck blocks with
  dim_inner = dim_out / 4, dim_out 256, 512, 1024, 2048. The first block of a stage has
  stride (temporal, spatial, spatial) = (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2) on its
  (2+1)D conv and a branch1_conv 1x1x1 shortcut of that stride + branch1_norm;
  branch2: conv_a 1x1x1 + norm_a + ReLU -> conv_b (Conv2plus1d: conv_t (3, 1, 1) with the
  temporal stride, padding (1, 0, 0) -> norm -> ReLU -> conv_xy (1, 3, 3) with the spatial
  stride, padding (0, 1, 1); inner channels = dim_inner) -> norm_b + ReLU -> conv_c
  1x1x1 + norm_c; the block adds the shortcut and applies ReLU;
- blocks.5 (ResNetBasicHead): pool AvgPool3d(head_pool, stride 1), dropout, proj Linear
  applied per position, then the global average over the remaining positions (the
  published head applies softmax per position before that average; left out here:
  logits).

Input (N, 3, T, H, W), already normalised. `base_filters` narrows the network for tests
(64 in R(2+1)D-50); `head_pool` must fit the last feature map ((4, 7, 7) for 16x224x224).
"""

import torch
from torch import nn

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
SPATIAL_STRIDES = (2, 2, 2, 2)
TEMPORAL_STRIDES = (1, 1, 2, 2)
EPS = 1e-5


def bn(channels):
    return nn.BatchNorm3d(channels, eps=EPS, momentum=0.1)


class Stem(nn.Module):
    def __init__(self, out_channels):
        super().__init__()
        self.conv = nn.Conv3d(3, out_channels, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.norm = bn(out_channels)
        self.activation = nn.ReLU()

    def forward(self, x):
        return self.activation(self.norm(self.conv(x)))


class Conv2plus1d(nn.Module):
    """Temporal conv first, then the spatial conv (conv_xy_first=False)."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        t, s = stride
        self.conv_t = nn.Conv3d(in_channels, out_channels, (3, 1, 1), (t, 1, 1), (1, 0, 0),
                                bias=False)
        self.norm = bn(out_channels)
        self.activation = nn.ReLU()
        self.conv_xy = nn.Conv3d(out_channels, out_channels, (1, 3, 3), (1, s, s), (0, 1, 1),
                                 bias=False)

    def forward(self, x):
        return self.conv_xy(self.activation(self.norm(self.conv_t(x))))


class Bottleneck(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, stride):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.norm_a = bn(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = Conv2plus1d(dim_inner, dim_inner, stride)
        self.norm_b = bn(dim_inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = bn(dim_out)

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, stride):
        super().__init__()
        t, s = stride
        if dim_in != dim_out or t * s * s != 1:
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, (t, s, s), bias=False)
            self.branch1_norm = bn(dim_out)
        else:
            self.branch1_conv = None
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, stride)
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, depth, dim_in, dim_inner, dim_out, stride):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out,
                     stride if i == 0 else (1, 1)) for i in range(depth))

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


class Head(nn.Module):
    def __init__(self, in_features, classes, pool, dropout_rate):
        super().__init__()
        self.pool = nn.AvgPool3d(pool, stride=1)
        self.dropout = nn.Dropout(dropout_rate)
        self.proj = nn.Linear(in_features, classes)

    def forward(self, x):
        x = self.dropout(self.pool(x))
        x = self.proj(x.permute(0, 2, 3, 4, 1))  # (N, T, H, W, classes)
        return x.mean(dim=(1, 2, 3))


class R2Plus1D(nn.Module):
    def __init__(self, depth=50, classes=400, base_filters=64, head_pool=(4, 7, 7),
                 dropout_rate=0.5):
        super().__init__()
        blocks = [Stem(base_filters)]
        dim_in, dim_out = base_filters, base_filters * 4
        for stage, count in enumerate(STAGE_BLOCKS[depth]):
            blocks.append(ResStage(count, dim_in, dim_out // 4, dim_out,
                                   (TEMPORAL_STRIDES[stage], SPATIAL_STRIDES[stage])))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(Head(dim_in, classes, head_pool, dropout_rate))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def randomize(model, seed=0):
    """Random weights and non-zero BatchNorm statistics (a trained-like state)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm3d, nn.BatchNorm2d)):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            elif isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()
