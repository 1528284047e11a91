"""Converting the published SqueezeTime checkpoints (xinghaochen/SqueezeTime) into
keras_tin.applications.SqueezeTime.

convert.assign_state_dict hands a state dict here when the model is a SqueezeTime network
or the checkpoint holds SqueezeTime's Channel-Time Learning blocks (see `applies`), so
neither is ever half-loaded into the other family: both are refused with both named.
Otherwise the guarantees are the ResNet path's: every checkpoint tensor lands on a Keras
variable of the same shape and every variable is covered, or nothing is assigned and a
ValueError lists the offending names. A classifier with another class count (or a model
without one) keeps the model's head, with a message.

SqueezeTime's weights depend on the frame count T: the stem takes 3*T channels. A
checkpoint for another T is refused with both counts, and position embeddings of another
size with the pos_dim to build.
"""

from keras_tin.weights import convert
from keras_tin.weights import layouts_squeezetime


def is_squeezetime_model(model):
    """True for a keras_tin model that stacks frames along the channels (SqueezeTime)."""
    from keras_tin.layers.squeezetime import TimeIntoChannels

    return any(isinstance(layer, TimeIntoChannels) for layer in model.layers)


def applies(model, state_dict):
    """Whether this converter (rather than another family's) handles the pair."""
    return is_squeezetime_model(model) or layouts_squeezetime.looks_like_squeezetime(
        list(state_dict))


def _frames_of(model):
    from keras_tin.layers.squeezetime import TimeIntoChannels

    return next(layer.frames for layer in model.layers if isinstance(layer, TimeIntoChannels))


def _pos_dims(canonical):
    """{stage: P} of the checkpoint's position embeddings."""
    dims = {}
    for key, value in canonical.items():
        if key.endswith(":embed"):
            dims[int(key[len("layer")])] = int(value.shape[-1])
    return tuple(dims[s] for s in sorted(dims))


def assign_state_dict(model, state_dict, layout=None, verbose=True):
    """Copies a SqueezeTime PyTorch state dict (name -> NumPy array) into a keras_tin
    SqueezeTime; see the module docstring. Returns a dict: layout, temporal
    ("squeezetime"), head_loaded, frames (of the checkpoint)."""
    keys = list(state_dict)
    model_is_st = is_squeezetime_model(model)
    ckpt_is_st = layouts_squeezetime.looks_like_squeezetime(keys)
    if ckpt_is_st and not model_is_st:
        raise ValueError(
            f"The checkpoint is a SqueezeTime network (keys layer*.conv2.param_conv / "
            f"spatial_conv) but model '{model.name}' is not; build "
            f"keras_tin.applications.SqueezeTime (architecture 'squeezetime'). Nothing was "
            f"loaded.")
    if model_is_st and not ckpt_is_st:
        raise ValueError(
            f"Model '{model.name}' is a SqueezeTime network but the checkpoint is not a "
            f"SqueezeTime checkpoint (keys backbone.net.layer*.conv2.param_conv.*, "
            f"...spatial_conv.*); nothing was loaded. First keys: {keys[:6]}")
    frames = _frames_of(model)
    channels = layouts_squeezetime.stem_channels(state_dict)
    if channels is not None and channels != 3 * frames:
        what = (f"T={channels // 3} frames" if channels % 3 == 0
                else f"{channels} input channels, not 3 x T")
        raise ValueError(
            f"The checkpoint is a SqueezeTime for {what} (its stem conv1 takes {channels} "
            f"input channels) but model '{model.name}' is built with frames={frames} "
            f"({3 * frames} = 3 x {frames} channels). SqueezeTime stacks the frames along "
            f"the channels, so its weights hold for one T only: build the model with "
            f"frames={channels // 3 if channels % 3 == 0 else '?'}. Nothing was loaded.")
    canonical, layout = layouts_squeezetime.canonicalize(state_dict, layout)
    variables = convert.keras_variables(model)
    fc = canonical.get("fc:weight:head")
    head_loaded = convert.load_head(model, variables, None if fc is None else fc.shape[0],
                                    verbose)
    assignments, problems, kept = convert.match_variables(
        canonical, variables, layouts_squeezetime.keras_target, head_loaded, "squeezetime")
    if problems:
        have = tuple(model.get_layer(f"layer{s}_0_conv2_spatial_conv_pos_embed").pos_dim
                     for s in range(1, 5) if _has_layer(model, f"layer{s}_0_conv2_"
                                                        f"spatial_conv_pos_embed"))
        want = _pos_dims(canonical)
        if want and have and want != have:
            problems.append(f"the checkpoint's position embeddings are for pos_dim={want}, "
                            f"the model's for pos_dim={have}: build it with pos_dim={want}")
        raise ValueError(f"Cannot load the {layout}-layout SqueezeTime checkpoint into model "
                         f"'{model.name}'; nothing was loaded. " + "; ".join(problems))
    convert.assign(assignments, variables, kept, verbose)
    return {"layout": layout, "temporal": "squeezetime", "head_loaded": head_loaded,
            "frames": frames}


def _has_layer(model, name):
    try:
        model.get_layer(name)
        return True
    except ValueError:
        return False
