"""Building the keras_tin model a manifest record or an architecture name needs.

This lives on the applications side: keras_tin.applications imports keras_tin.weights
(the manifest, the loaders), never the other way round at import time. The weights
package's `build_for_record` / `pretrained` are thin wrappers that call these.
"""

from keras_tin import architectures
from keras_tin.weights import registry


def build_for_architecture(arch, **kwargs):
    """The model of an architecture name (keras_tin.architectures): 'tin_resnet50',
    'tada2d_resnet50', 'tea_res2net50', 'tsm_eca_resnet50', 'tsm_mobilenetv2', or an
    image backbone 'resnet50' / 'res2net50' / 'eca_resnet50' (a TSN network). kwargs go
    to the constructor."""
    parsed = architectures.parse(arch)
    if parsed.standalone:
        return parsed.build_function()(**kwargs)
    temporal = parsed.temporal or "tsn"
    if parsed.backbone == "mobilenetv2":
        from keras_tin.applications.mobilenet_v2 import TemporalMobileNetV2
        return TemporalMobileNetV2(temporal, **kwargs)
    for key, value in parsed.constructor_kwargs().items():
        kwargs.setdefault(key, value)
    from keras_tin.applications.temporal_resnet import TemporalResNet
    return TemporalResNet(temporal, parsed.depth, **kwargs)


def build_for_record(record, **kwargs):
    """The keras_tin model a manifest record's weights belong to (architecture, non-local
    mode, frames, classes and normalisation from the record); kwargs override. An image
    backbone record (resnet50/resnet101) gives a TSN ResNet with its 1000-class head."""
    arch = record["architecture"]
    kwargs.setdefault("classes", record["classes"])
    kwargs.setdefault("normalization", record["normalization"])
    kwargs.setdefault("frames", record["frames"] or 1)  # image backbones: one frame
    if record.get("non_local"):
        kwargs.setdefault("non_local", record["non_local"])
    if record.get("online"):  # online TSM (keras_tin.streaming): TemporalMobileNetV2(online=True)
        kwargs.setdefault("online", True)
    return build_for_architecture(arch, **kwargs)


def pretrained(name, allow_unverified=False, **kwargs):
    """Builds the model a manifest checkpoint needs (architecture, non-local mode, frames,
    classes, normalisation from its record) and loads it. kwargs go to the constructor."""
    from keras_tin.weights.loading import load_weights

    record = registry.get_record(name)
    parsed = architectures.parse(record["architecture"])
    if parsed.image_backbone:
        example = ("TEARes2Net50" if parsed.backbone == "res2net"
                   else f"TINResNet{parsed.depth}")
        raise ValueError(f"'{name}' is an image backbone ({parsed.name}): build a video "
                         f"model on it (e.g. {example}) and pass weights={name!r} to "
                         f"initialise it.")
    model = build_for_record(record, **kwargs)
    return load_weights(model, name, allow_unverified=allow_unverified,
                        build_source=build_for_record)
