"""Building the keras_tin model a manifest record or an architecture name needs.

This lives on the applications side: keras_tin.applications imports keras_tin.weights
(the manifest, the loaders), never the other way round at import time. The weights
package's `build_for_record` / `pretrained` are thin wrappers that call these.
"""

from keras_tin.weights import registry


def build_for_architecture(arch, **kwargs):
    """The model of an architecture name: 'tin_resnet50', 'tsm_mobilenetv2', or an image
    backbone 'resnet50' / 'resnet101' (a TSN ResNet). kwargs go to the constructor."""
    from keras_tin.weights import convert
    from keras_tin.weights import convert_mobilenet

    kind = convert_mobilenet.parse_architecture(arch)
    if kind is not None:
        from keras_tin.applications.mobilenet_v2 import TemporalMobileNetV2
        return TemporalMobileNetV2(kind, **kwargs)
    if arch in ("resnet50", "resnet101"):
        temporal, depth = "tsn", int(arch[len("resnet"):])
    else:
        temporal, depth = convert.parse_architecture(arch)
    from keras_tin.applications.temporal_resnet import TemporalResNet
    return TemporalResNet(temporal, depth, **kwargs)


def build_for_record(record, **kwargs):
    """The keras_tin model a manifest record's weights belong to (architecture, non-local
    mode, frames, classes and normalisation from the record); kwargs override. An image
    backbone record (resnet50/resnet101) gives a TSN ResNet with its 1000-class head."""
    from keras_tin.weights import convert_mobilenet

    arch = record["architecture"]
    kwargs.setdefault("classes", record["classes"])
    kwargs.setdefault("normalization", record["normalization"])
    kwargs.setdefault("frames", record["frames"] or 1)  # image backbones: one frame
    if not convert_mobilenet.parse_architecture(arch) and record.get("non_local"):
        kwargs.setdefault("non_local", record["non_local"])
    return build_for_architecture(arch, **kwargs)


def pretrained(name, allow_unverified=False, **kwargs):
    """Builds the model a manifest checkpoint needs (architecture, non-local mode, frames,
    classes, normalisation from its record) and loads it. kwargs go to the constructor."""
    from keras_tin.weights.loading import load_weights

    record = registry.get_record(name)
    if record["architecture"] in ("resnet50", "resnet101"):
        depth = record["architecture"][len("resnet"):]
        raise ValueError(f"'{name}' is an image backbone: build a temporal ResNet-{depth} "
                         f"(e.g. TINResNet{depth}) and pass weights={name!r} to initialise it.")
    model = build_for_record(record, **kwargs)
    return load_weights(model, name, allow_unverified=allow_unverified,
                        build_source=build_for_record)
