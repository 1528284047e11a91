"""Independent PyTorch reference of online TSM MobileNetV2, written from the semantics of
MIT temporal-shift-module's online demo (online_demo/mobilenet_v2_tsm.py) with its module
structure, hence its state-dict keys: features.0.{0,1}.*, features.{1..17}.conv.{k}.*,
features.18.{0,1}.*, classifier.* (the layout of mobilenetv2_jester_online.pth.tar).

One call processes ONE frame: forward(x, *buffers) -> (logits, *new_buffers). A block with
the shift (a residual block with expansion; the demo's shift_block_idx) replaces the first
C/8 channels of its input by its buffer (the previous frame's first C/8 input channels,
zeros at the start) before the residual branch, and returns the current first C/8
channels as the new buffer; the shortcut adds the un-shifted input. NCHW, inputs already
normalised.
"""

import torch
from torch import nn

SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]
SHIFT_BLOCKS = (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)  # online demo's shift_block_idx


def _conv_bn(cin, cout, k, stride, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU6()] if relu else [])


class Block(nn.Module):
    def __init__(self, cin, cout, stride, t, shift):
        super().__init__()
        hidden = cin * t
        layers = []
        if t != 1:
            layers += _conv_bn(cin, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, 1, relu=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.shift = shift

    def forward(self, x, buffer=None):
        if not self.shift:
            y = self.conv(x)
            return (x + y if self.residual else y), None
        fold = x.shape[1] // 8
        shifted = torch.cat([buffer, x[:, fold:]], 1)
        return x + self.conv(shifted), x[:, :fold]


class OnlineMobileNetV2(nn.Module):
    def __init__(self, classes=27):
        super().__init__()
        features = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        cin, index = 32, 0
        for t, c, n, s in SETTINGS:
            for j in range(n):
                features.append(Block(cin, c, s if j == 0 else 1, t, index in SHIFT_BLOCKS))
                cin, index = c, index + 1
        features.append(nn.Sequential(*_conv_bn(cin, 1280, 1, 1)))
        self.features = nn.ModuleList(features)
        self.classifier = nn.Linear(1280, classes)

    def zero_buffers(self, batch, height, width):
        """The state before the first frame (shapes for frames of height x width)."""
        with torch.no_grad():
            _, *buffers = self(torch.zeros(batch, 3, height, width), _shapes_only=True)
        return [torch.zeros_like(b) for b in buffers]

    def forward(self, x, *buffers, _shapes_only=False):
        out, k = [], 0
        for f in self.features:
            if isinstance(f, Block):
                if f.shift:
                    buf = (buffers[k] if buffers and not _shapes_only
                           else torch.zeros_like(x[:, :x.shape[1] // 8]))
                    x, new = f(x, buf)
                    out.append(new)
                    k += 1
                else:
                    x, _ = f(x)
            else:
                x = f(x)
        return (self.classifier(x.mean((2, 3))), *out)


def run_frames(model, frames):
    """frames (T, N, 3, H, W) -> logits (T, N, classes), stepping with carried buffers."""
    buffers = model.zero_buffers(frames.shape[1], frames.shape[3], frames.shape[4])
    out = []
    with torch.no_grad():
        for frame in frames:
            logits, *buffers = model(frame, *buffers)
            out.append(logits)
    return torch.stack(out)
