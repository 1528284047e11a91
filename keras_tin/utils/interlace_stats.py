"""What TIN learned: per-layer offsets and weights for a batch of clips."""

import keras
import numpy as np

from keras_tin.layers import TemporalInterlace


def tin_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, TemporalInterlace)]


def interlace_stats(model, clips):
    """Offsets and weights of every TemporalInterlace in `model` for `clips`.

    Returns a list of (layer name, offsets (N, 4), weights (N, T, 4)) NumPy arrays, in
    network order. Each TIN layer sits inside a TemporalConv2D, whose input is the
    input of the TIN layer.
    """
    hosts = [layer for layer in model._flatten_layers(include_self=False)
             if getattr(layer, "temporal_module", None) is not None
             and isinstance(layer.temporal_module, TemporalInterlace)]
    if not hosts:
        raise ValueError(f"Model '{model.name}' has no TemporalInterlace layer.")
    probe = keras.Model(model.input, [host.input for host in hosts])
    features = probe(clips, training=False)
    if not isinstance(features, (list, tuple)):
        features = [features]
    stats = []
    for host, feature in zip(hosts, features):
        offsets, weights = host.temporal_module.offsets_and_weights(feature)
        stats.append((host.temporal_module.name, keras.ops.convert_to_numpy(offsets),
                      keras.ops.convert_to_numpy(weights)))
    return stats


def plot_interlace_stats(stats, path, title="TIN offsets and weights per layer"):
    """The paper's Figure 5: mean offset per group and mean weight per frame, per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name.replace("_conv1_tin", "") for name, _, _ in stats]
    offsets = np.stack([o.mean(axis=0) for _, o, _ in stats])  # (layers, 4)
    weights = np.stack([w.mean(axis=0) for _, _, w in stats])  # (layers, T, 4)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    x = np.arange(len(names))
    for g in range(2):  # groups 2, 3 mirror groups 0, 1
        axes[0].plot(x, offsets[:, g], marker="o", label=f"base group {g} (group {g + 2} = -this)")
    axes[0].axhline(0, color="gray", lw=0.5)
    axes[0].set_xticks(x, names, rotation=60, fontsize=7)
    axes[0].set_ylabel("mean offset (frames)")
    axes[0].set_title("Learned temporal offsets")
    axes[0].legend(fontsize=8)
    image = axes[1].imshow(weights[:, :, 0].T, aspect="auto", cmap="viridis")
    axes[1].set_xticks(x, names, rotation=60, fontsize=7)
    axes[1].set_ylabel("frame t")
    axes[1].set_title("Mean weight w[t] of base group 0")
    fig.colorbar(image, ax=axes[1])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
