"""TIN-ResNet-50 on 20BN Jester (27 hand gestures, JPEG frame folders).

No horizontal flip: "swiping left" flipped is "swiping right".

    python examples/jester.py --root /data/... [--weights NAME_OR_FILE] [--output-dir runs/x]
    python examples/jester.py --root /data/... --smoke     # a tiny end-to-end check

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
    dataset="jester",
    output_dir="runs/tin_r50_jester",
)

if __name__ == "__main__":
    run_example(RECIPE, __doc__.split("\n")[0])
