"""An independent PyTorch reference of the ECA-Net ResNets (Wang et al., CVPR 2020), written
from docs (/work/shared/ZOO_SPEC.md section 6), with the official module names: the state dict
of `ECAResNet`, wrapped as {'state_dict': {'module.' + key: value}} by `official_checkpoint`,
is the layout of the released ECA-ResNet ImageNet checkpoints (conv1, bn1, layerL.b.convN,
layerL.b.bnN, layerL.b.eca.conv (Conv1d 1->1, (1, 1, k)), layerL.b.downsample.{0,1}, fc).

ECA: y = GAP(x) (N, C); z = Conv1d(1, 1, k, padding (k-1)/2, no bias) over the channel axis
seen as a sequence; x * sigmoid(z). It sits after the branch's last BN, before the add.

For the video tests a block can carry a temporal module in front of conv1 on the residual
branch (`temporal="tsm"`: the TSM shift, fold C/8; `"tin"`: torch_reference.Interlace);
its parameters are not part of the official layout (`official_state_dict` drops them).
Inputs: normalised NCHW images (video: frames folded clip-major, N*T rows).
"""

import torch
from torch import nn
import torch.nn.functional as F

import torch_reference

LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class ECALayer(nn.Module):
    """Efficient channel attention; parameter `conv.weight` of shape (1, 1, k)."""

    def __init__(self, k):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x):
        descriptor = x.mean(dim=(2, 3))  # (N, C)
        z = self.conv(descriptor.unsqueeze(1)).squeeze(1)  # the channels as a 1-D sequence
        return x * torch.sigmoid(z)[:, :, None, None]


class Shift(nn.Module):
    """TSM shift (no parameters): channels [0, C/8) from t+1, [C/8, C/4) from t-1."""

    def __init__(self, frames, shift_div=8):
        super().__init__()
        self.frames, self.shift_div = frames, shift_div

    def forward(self, x):
        nt, c, h, w = x.shape
        t, fold = self.frames, c // self.shift_div
        v = x.reshape(nt // t, t, c, h, w)
        out = v.clone()
        out[:, :, :2 * fold] = 0
        out[:, :-1, :fold] = v[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
        return out.reshape(nt, c, h, w)


def _temporal(kind, channels, frames):
    if kind == "tsm":
        return Shift(frames)
    if kind == "tin":
        return torch_reference.Interlace(channels, frames)
    return nn.Identity()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, k, temporal, frames):
        super().__init__()
        self.temporal = _temporal(temporal, inplanes, frames)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.eca = ECALayer(k)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(self.temporal(x))))
        y = self.eca(self.bn2(self.conv2(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, k, temporal, frames):
        super().__init__()
        self.temporal = _temporal(temporal, inplanes, frames)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.eca = ECALayer(k)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(self.temporal(x))))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.eca(self.bn3(self.conv3(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ECAResNet(nn.Module):
    """ECA-ResNet-`depth` image classifier; `width` is the stem / stage-1 width (64 in the
    released networks); kernel_sizes: the ECA kernel size per stage (layer1..layer4)."""

    def __init__(self, depth=50, kernel_sizes=(3, 5, 5, 7), classes=1000, width=64,
                 temporal="tsn", frames=1):
        super().__init__()
        kind, counts = LAYERS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for stage, (count, k) in enumerate(zip(counts, kernel_sizes)):
            planes = width * 2 ** stage
            blocks = []
            for b in range(count):
                blocks.append(block(inplanes, planes, 2 if (b == 0 and stage > 0) else 1, k,
                                    temporal, frames))
                inplanes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, classes)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return x

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def video_logits(model, folded, frames):
    """The image model on every frame (N*T, 3, H, W), per-frame logits averaged (TSN
    consensus) -> (N, classes)."""
    logits = model(folded)
    return logits.reshape(-1, frames, logits.shape[-1]).mean(dim=1)


def official_state_dict(model):
    """The model's state dict in the ECA-ResNet release's names (temporal modules dropped)."""
    return {k: v for k, v in model.state_dict().items() if ".temporal." not in k}


def official_checkpoint(model, optimizer=True):
    """A training checkpoint as the ECA-Net main.py saves it from a DataParallel model, the
    layout of the released eca_resnet*_k*.pth.tar files: {'epoch', 'arch',
    'state_dict': {'module.' + key: tensor}, 'best_prec1', 'optimizer'} (with optimizer=True,
    an SGD state with momentum buffers)."""
    checkpoint = {"epoch": 100, "arch": "eca_resnet",
                  "state_dict": {"module." + k: v
                                 for k, v in official_state_dict(model).items()},
                  "best_prec1": torch.tensor(77.42)}
    if optimizer:
        params = list(model.parameters())
        sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
        for p in params:
            p.grad = torch.zeros_like(p)
        saved = [p.detach().clone() for p in params]
        sgd.step()  # creates the momentum buffers
        with torch.no_grad():
            for p, value in zip(params, saved):  # weight decay moved the weights: undo
                p.copy_(value)
                p.grad = None
        checkpoint["optimizer"] = sgd.state_dict()
    return checkpoint
