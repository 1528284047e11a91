"""TIN-ResNet-50 on your own videos: root/{train,val}/<class>/<video or frame folder>.

Class names are the folder names. Start from pretrained weights (--weights): with
few videos, fine-tuning beats training from scratch; the old classifier is dropped.
Folder data is not flipped by default (left/right can be the label); pass --flip true if
mirrored videos keep their label.

    python examples/own_videos.py --root /data/... [--weights NAME_OR_FILE] [--output-dir runs/x]
    python examples/own_videos.py --root /data/... --smoke     # a tiny end-to-end check

Every TrainConfig field is a flag (see `--help`) or a key of a JSON/YAML `--config`
file. Training runs `model.fit` through keras_tin.training.train, the same code as
`keras-tin train`; then the model is scored with 1 clip x centre crop on the
validation split (`keras-tin evaluate` does N clips x 3 crops).
"""

from keras_tin.training import TrainConfig
from keras_tin.training import run_example

# The paper's recipe (TrainConfig's defaults: SGD momentum 0.9, weight decay 5e-4,
# lr 0.005 /10 at epochs 10 and 20, 25 epochs, dropout 0.5, partial BN, clipping, 8 frames)
RECIPE = TrainConfig(
    dataset="folder",
    output_dir="runs/tin_own_videos",
)

if __name__ == "__main__":
    run_example(RECIPE, __doc__.split("\n")[0])
