"""3D and (2+1)D video CNNs (issue 14): networks that convolve over time themselves.

- resnet3d: torchvision's VideoResNet family (R3D-18, MC3-18, R(2+1)D-18) and R(2+1)D-34
  in its mmaction2 and VMZ/IG-65M forms, on the conv builders of blocks3d;
- the pytorchvideo bottleneck R(2+1)D-50 and P3D live beside them (one file each).

Input: clips (batch, frames, H, W, 3), channels-last, 0-255 RGB.
"""
