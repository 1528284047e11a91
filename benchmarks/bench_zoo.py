"""The zoo's new models side by side: Keras forward latency vs the PyTorch reference of the
same network, and vs TSN-R50 against the FLOPs ratio, measured in one run.

For each model (TAda2D-R50, TEA-Res2Net-50 and its backbone per frame TSN-Res2Net-50,
STM-R50, TSN+ECA-R50, and TSN-R50 as the base), batch 1 x 8 frames x 224 px, inference:
- keras: the Keras model in a tf.function (graph mode, TensorFlow backend);
- torch: the independent PyTorch reference in weights/torch_reference*.py (eval, no_grad),
  the same architecture with the publisher's module tree.
Everything runs interleaved, round-robin, and the median per runtime is reported, with
- keras / torch (target: <= 1.0, keras_tin no slower than PyTorch at batch 1);
- keras / keras TSN-R50 next to MACs / MACs of TSN-R50 (keras_tin.utils.flops): the
  target is the latency ratio within 10 % of the FLOPs ratio.
Both frameworks use their default CPU thread pools.

    .venv/bin/python benchmarks/bench_zoo.py [--repeats 5] [--models tada2d,res2net,tea,stm,eca]
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights"))

from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402

MODELS = {  # name: (keras architecture, constructor kwargs)
    "tsn": ("tsn_resnet50", {}),
    "tada2d": ("tada2d_resnet50", {}),
    "res2net": ("tsn_res2net50", {}),
    "tea": ("tea_res2net50", {}),
    "stm": ("stm_resnet50", {}),
    "eca": ("tsn_eca_resnet50", {}),
}
TITLES = {"tsn": "TSN-R50", "tada2d": "TAda2D-R50", "res2net": "TSN-Res2Net-50",
          "tea": "TEA-Res2Net-50",
          "stm": "STM-R50", "eca": "TSN+ECA-R50"}


def torch_reference(name, frames, classes):
    """(module, input layout): 'folded' (N*T, 3, H, W) or 'clips' (N, 3, T, H, W)."""
    if name == "tsn":
        import torch_reference as tr
        return tr.Recognizer("tsn", 50, frames, classes), "folded"
    if name == "tada2d":
        import torch_reference_tada as trt
        return trt.TAda2DResNet(classes), "clips"
    if name in ("tea", "res2net"):
        import torch_reference_tea as trr
        return trr.Release("tea" if name == "tea" else None, frames, classes), "folded"
    if name == "stm":
        import torch_reference_stm as trs
        return trs.Release(50, frames, classes), "folded"
    if name == "eca":
        import torch_reference_eca as tre

        class Video(torch.nn.Module):  # the image model per frame, logits averaged (TSN)
            def __init__(self):
                super().__init__()
                self.image = tre.ECAResNet(50, (3, 5, 5, 7), classes)

            def forward(self, x):
                return tre.video_logits(self.image, x, frames)

        return Video(), "folded"
    raise ValueError(name)


def round_robin(fns, repeats):
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (tracing, first-run allocation)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="tada2d,res2net,tea,stm,eca")
    args = parser.parse_args()
    names = ["tsn"] + [m for m in args.models.split(",") if m and m != "tsn"]
    frames, size, classes = args.frames, args.size, 400
    print(f"TF {tf.__version__} (intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); batch 1 x {frames} "
          f"frames x {size} px")
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 255, (1, frames, size, size, 3)).astype("float32")
    normalised = ((clip - 114.0) / 57.0).reshape(-1, size, size, 3).transpose(0, 3, 1, 2)
    folded = torch.from_numpy(np.ascontiguousarray(normalised))
    clips_t = folded.reshape(1, frames, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()
    fns, macs = {}, {}
    x = tf.constant(clip)
    for name in names:
        arch, kwargs = MODELS[name]
        model = build_for_architecture(arch, frames=frames, classes=classes,
                                       input_shape=(frames, size, size, 3), **kwargs)
        macs[name] = flops(model)
        fn = tf.function(lambda x, m=model: m(x, training=False))
        fns[(name, "keras")] = lambda fn=fn: fn(x).numpy()
        ref, layout = torch_reference(name, frames, classes)
        ref.eval()
        inp = folded if layout == "folded" else clips_t

        def run_torch(ref=ref, inp=inp):
            with torch.no_grad():
                return ref(inp).numpy()

        fns[(name, "torch")] = run_torch
    medians = round_robin(fns, args.repeats)
    base = medians[("tsn", "keras")]
    print("\n| model | MACs (G) | keras s | torch s | keras / torch | keras / TSN-R50 | "
          "MACs / TSN-R50 | latency ratio / MACs ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        k, t = medians[(name, "keras")], medians[(name, "torch")]
        flops_ratio = macs[name] / macs["tsn"]
        print(f"| {TITLES[name]} | {macs[name] / 1e9:.2f} | {k:.3f} | {t:.3f} | {k / t:.2f} | "
              f"{k / base:.3f} | {flops_ratio:.3f} | {(k / base) / flops_ratio:.3f} |")


if __name__ == "__main__":
    main()
