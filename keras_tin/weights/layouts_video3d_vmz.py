"""Key layout of the VMZ / IG-65M R(2+1)D-34 checkpoints as moabitcoin/ig65m-pytorch
publishes them (ig65m/models.py r2plus1d_34: torchvision's VideoResNet with BasicBlock,
Conv2Plus1D and R2Plus1dStem, the conv2 of the first block of layers 2-4 rebuilt with
middle widths 288 / 576 / 1152, BN eps 1e-3), converted from the Caffe2 VMZ models.

The keys are torchvision's (stem.{0,1,3,4}.*, layerL.b.convK.0.{0,1,3}.*, convK.1.*,
downsample.{0,1}.*, fc.*; see layouts_video3d_torchvision), so the rules are shared;
"vmz" is the layout name the manifest records use. The shapes differ from a torchvision
R(2+1)D (three middle widths, four stages of 3/4/6/3 blocks): keras_tin's
R2Plus1D34(variant="vmz") has them, and a torchvision-rule model reports the mismatches.
"""

from keras_tin.weights import layouts_video3d_torchvision as _torchvision

LAYOUT = "vmz"
looks_like = _torchvision.looks_like


def canonicalize(state_dict, layout=None):
    """(canonical dict, "vmz"); see layouts_video3d_torchvision.canonicalize."""
    return _torchvision.canonicalize(state_dict, layout, name=LAYOUT, accepted=(None, LAYOUT))
