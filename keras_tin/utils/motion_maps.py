"""Pictures of MSNet's motion features: per frame pair, the frame, the MotionSqueeze flow
(colour wheel with arrows) and its confidence, like the paper's visualisations (Kwon et al.,
ECCV 2020, figures of estimated motion).

    maps = motion_maps(model, clip)                  # (frames - 1, h, w, 3): fx, fy, conf
    plot_motion_maps(clip, maps, "msnet_flow.png")   # one row per frame pair

Flow is in the module's units: displacement / 7 feature cells (stride 8 at res3, so 1.0 is
56 input pixels), x to the right and y DOWN (image rows), from frame t to frame t+1.
The colour wheel: hue = direction (right red, down yellow-green, left cyan, up blue-violet,
the usual optical-flow wheel with image y down), saturation = magnitude / the largest
magnitude in the picture.
"""

import numpy as np


def motion_maps(model, clip):
    """(frames - 1, h, w, 3) maps (flow_x, flow_y, confidence) of one clip (frames, H, W, 3)
    or (batch, frames - 1, h, w, 3) of a batch of clips, from an MSNet's MotionSqueeze module."""
    from keras import ops

    from keras_tin.layers.motion_squeeze import flow_maps_model

    clip = np.asarray(clip, np.float32)
    single = clip.ndim == 4
    batch = clip[None] if single else clip
    if batch.ndim != 5:
        raise ValueError(f"motion_maps expects a clip (frames, H, W, 3) or clips (batch, "
                         f"frames, H, W, 3). Received: shape {clip.shape}")
    maps = ops.convert_to_numpy(flow_maps_model(model)(batch, training=False))
    return maps[0] if single else maps


def flow_to_rgb(flow_x, flow_y, max_magnitude=None):
    """(h, w, 3) uint8 colour-wheel image of a flow field; max_magnitude sets full
    saturation (default: the field's largest magnitude)."""
    fx, fy = np.asarray(flow_x, np.float64), np.asarray(flow_y, np.float64)
    magnitude = np.hypot(fx, fy)
    scale = max_magnitude if max_magnitude else max(float(magnitude.max()), 1e-12)
    hue = (np.arctan2(fy, fx) / (2 * np.pi)) % 1.0
    sat = np.clip(magnitude / scale, 0.0, 1.0)
    return (_hsv_to_rgb(hue, sat, np.ones_like(hue)) * 255).round().astype(np.uint8)


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(choices):
        mask = i == k
        out[mask] = np.stack([r[mask], g[mask], b[mask]], -1)
    return out


def _display(frame):
    frame = np.asarray(frame, np.float32)
    low, high = float(frame.min()), float(frame.max())
    if high > 1.0 or low < 0.0:  # 0-255 RGB or normalised: stretch for display
        frame = (frame - low) / max(high - low, 1e-6)
    return np.clip(frame, 0, 1)


def plot_motion_maps(clip, maps, path, title=None, dpi=100, arrows=True):
    """Writes a PNG: one row per frame pair t -> t+1 with frame t, the flow (colour wheel,
    arrows) and the confidence map. clip (frames, H, W, 3); maps (frames - 1, h, w, 3) from
    motion_maps. Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clip, maps = np.asarray(clip), np.asarray(maps)
    if clip.ndim != 4 or maps.ndim != 4 or maps.shape[-1] != 3 \
            or maps.shape[0] != clip.shape[0] - 1:
        raise ValueError(f"plot_motion_maps expects a clip (frames, H, W, 3) and its maps "
                         f"(frames - 1, h, w, 3). Received: clip {clip.shape}, maps "
                         f"{maps.shape}")
    pairs = maps.shape[0]
    peak = max(float(np.hypot(maps[..., 0], maps[..., 1]).max()), 1e-12)
    conf_max = max(float(maps[..., 2].max()), 1e-12)
    fig, axes = plt.subplots(pairs, 3, figsize=(7.5, 2.5 * pairs), squeeze=False)
    h, w = maps.shape[1:3]
    for t in range(pairs):
        fx, fy, conf = maps[t, ..., 0], maps[t, ..., 1], maps[t, ..., 2]
        axes[t, 0].imshow(_display(clip[t]))
        axes[t, 0].set_title(f"frame {t} (to {t + 1})", fontsize=8)
        axes[t, 1].imshow(flow_to_rgb(fx, fy, peak), extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        if arrows:
            yy, xx = np.mgrid[0:h, 0:w]
            step = max(1, max(h, w) // 8)
            axes[t, 1].quiver(xx[::step, ::step], yy[::step, ::step], fx[::step, ::step],
                              fy[::step, ::step], angles="xy", scale_units="xy",
                              scale=peak / step if peak > 0 else 1, color="k", width=0.006)
        axes[t, 1].set_xlim(-0.5, w - 0.5)
        axes[t, 1].set_ylim(h - 0.5, -0.5)
        axes[t, 1].set_title(f"flow (max |f| {peak:.2f})", fontsize=8)
        image = axes[t, 2].imshow(conf, cmap="magma", vmin=0, vmax=conf_max)
        axes[t, 2].set_title("confidence", fontsize=8)
        fig.colorbar(image, ax=axes[t, 2], fraction=0.046, pad=0.04)
        for ax in axes[t]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
