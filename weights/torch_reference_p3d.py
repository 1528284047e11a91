"""An independent PyTorch P3D ResNet (Pseudo-3D residual networks, Qiu, Yao and Mei, ICCV
2017) with the module names of the PyTorch port qijiezhao/pseudo-3d-pytorch (p3d_model.py),
written from ZOO_SPEC.md section 10 and that file's structure (not imported from it):

- conv1_custom Conv3d(3 -> 64, (1, 7, 7), stride (1, 2, 2), padding (0, 3, 3)) + bn1 + ReLU
  + MaxPool3d((2, 3, 3), stride 2, padding (0, 1, 1));
- layer1..layer3 (res2..res4): pseudo-3D bottlenecks, blocks numbered globally from 0; block
  n is of type "ABC"[n % 3]: conv1 1x1x1 + bn1 + ReLU, then with S = conv2 (1, 3, 3) +
  bn2 + ReLU and T = conv3 (3, 1, 1) + bn3 + ReLU:
  A: T(S(x)); B: S(x) + T(x); C: S(x) + T(S(x)); then conv4 1x1x1 (4x) + bn4, the shortcut
  added, ReLU. The first block of layer2/layer3 has stride (1, 2, 2) on conv1 and on its
  downsample (Conv3d 1x1x1 + BN); layer1's first block has a stride-1 downsample;
  MaxPool3d((2, 1, 1), stride (2, 1, 1)) after each of layer1..layer3;
- layer4 (res5): 2-D bottlenecks on the (now single) frame: conv1 Conv2d 1x1 (stride 2 in
  the first block) + bn1, conv_normal 3x3 + bn_normal, conv4 1x1 + bn4; downsample Conv2d
  1x1 stride 2 + BN2d;
- AvgPool2d(head_pool, stride 1) -> dropout -> fc (the port uses 5x5 at 160 px, where it
  covers the 5x5 map; here the pool must cover the map as well).

Input (N, 3, 16, H, W), already normalised; after the four temporal halvings one frame is
left, which the port's x.view(-1, C, H, W) needs. `base_filters` narrows the network for
tests (64 in P3D).
"""

import torch
from torch import nn

STAGE_BLOCKS = {63: (3, 4, 6, 3), 131: (3, 4, 23, 3), 199: (3, 8, 36, 3)}


def _s(cin, cout):
    return nn.Conv3d(cin, cout, (1, 3, 3), 1, (0, 1, 1), bias=False)


def _t(cin, cout):
    return nn.Conv3d(cin, cout, (3, 1, 1), 1, (1, 0, 0), bias=False)


class Bottleneck3D(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, kind):
        super().__init__()
        self.kind = kind
        self.conv1 = nn.Conv3d(inplanes, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _s(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = _t(planes, planes)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv4 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn4 = nn.BatchNorm3d(planes * 4)
        self.downsample = downsample
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        spatial = lambda h: self.relu(self.bn2(self.conv2(h)))  # noqa: E731
        temporal = lambda h: self.relu(self.bn3(self.conv3(h)))  # noqa: E731
        if self.kind == "A":
            out = temporal(spatial(out))
        elif self.kind == "B":
            out = spatial(out) + temporal(out)
        else:
            s = spatial(out)
            out = s + temporal(s)
        out = self.bn4(self.conv4(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck2D(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv_normal = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn_normal = nn.BatchNorm2d(planes)
        self.conv4 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn_normal(self.conv_normal(out)))
        out = self.bn4(self.conv4(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class P3D(nn.Module):
    def __init__(self, depth=199, classes=400, base_filters=64, head_pool=(5, 5),
                 dropout_rate=0.5):
        super().__init__()
        layers = STAGE_BLOCKS[depth]
        self.conv1_custom = nn.Conv3d(3, base_filters, (1, 7, 7), (1, 2, 2), (0, 3, 3),
                                      bias=False)
        self.bn1 = nn.BatchNorm3d(base_filters)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d((2, 3, 3), 2, (0, 1, 1))
        self.maxpool_2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))
        inplanes, index = base_filters, 0
        for stage, count in enumerate(layers):
            planes = base_filters * 2 ** stage
            blocks = []
            for b in range(count):
                cin = inplanes if b == 0 else planes * 4
                if stage < 3:
                    stride = (1, 2, 2) if (b == 0 and stage > 0) else 1
                    down = None
                    if b == 0:
                        down = nn.Sequential(nn.Conv3d(cin, planes * 4, 1, stride, bias=False),
                                             nn.BatchNorm3d(planes * 4))
                    blocks.append(Bottleneck3D(cin, planes, stride, down, "ABC"[index % 3]))
                else:
                    stride = 2 if b == 0 else 1
                    down = None
                    if b == 0:
                        down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, 2, bias=False),
                                             nn.BatchNorm2d(planes * 4))
                    blocks.append(Bottleneck2D(cin, planes, stride, down))
                index += 1
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            inplanes = planes * 4
        self.avgpool = nn.AvgPool2d(head_pool, stride=1)
        self.dropout = nn.Dropout(dropout_rate)
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1_custom(x))))
        x = self.maxpool_2(self.layer1(x))
        x = self.maxpool_2(self.layer2(x))
        x = self.maxpool_2(self.layer3(x))
        n, c, t, h, w = x.shape
        assert t == 1, f"P3D's res5 needs one frame left after res4, got {t}"
        x = self.layer4(x.view(-1, c, h, w))
        x = self.avgpool(x)
        x = x.view(-1, self.fc.in_features)
        return self.fc(self.dropout(x))
