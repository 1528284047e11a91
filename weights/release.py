"""The release pipeline for converted weights: publisher's file -> keras_tin .weights.h5.

For each manifest record (or the ones named), this:
1. downloads the publisher's checkpoint (or takes --source PATH) and checks its hash;
2. converts it exactly into the keras_tin model the record describes;
3. writes <out>/<name>.weights.h5;
4. where torch is installed, re-checks parity: the written file, loaded into a fresh model,
   against a PyTorch run of the original checkpoint (weights/torch_reference.py, an
   independent reference with the publishers' key names), on seeded random clips;
5. writes <out>/<name>.json beside it: source URL and sha256, the converted file's sha256
   and size, parity, label list, preprocessing, versions.

Publishing the .weights.h5 somewhere and filling the record's converted_url and
converted_sha256 makes `weights=<name>` load it directly, without torch and without
conversion (the loader prefers a converted file when the record has one).

    python weights/release.py NAME [NAME ...] [--out weights/release] [--source FILE]
    python weights/release.py --all
    make weights NAME=tsm_resnet50_8f_kinetics400_openmmlab
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "release")
PARITY_CLIPS = 2


def to_reference_keys(state_dict, layout):
    """A publisher state dict renamed to the PyTorch reference's (mmaction2) key names.

    openmmlab keys are the reference's own; the MIT / X-Temporal ("authors") and
    torchvision layouts are renamed here, written from those publishers' module trees
    independently of keras_tin's converter.
    """
    if layout == "openmmlab":
        return dict(state_dict)
    authors = [
        ("conv1.net1.biasnet.net.conv.", "conv1.conv.net1.offset_net.conv."),
        ("conv1.net1.biasnet.net.fc.", "conv1.conv.net1.offset_net.fc1."),
        ("conv1.net1.biasnet.net.lastlayer.", "conv1.conv.net1.offset_net.fc2."),
        ("conv1.net1.weightnet.net.lastlayer.", "conv1.conv.net1.weight_net.conv."),
        ("conv1.net2.", "conv1.conv.net2."),
        ("conv1.net.", "conv1.conv.net."),
    ]
    out = {}
    for key, value in state_dict.items():
        name = key
        for prefix in ("module.", "base_model."):
            name = name[len(prefix):] if name.startswith(prefix) else name
        if name.startswith(("new_fc.", "fc.")):
            out["cls_head.fc_cls." + name.split(".", 1)[1]] = value
            continue
        if name.startswith("conv1."):
            name = "conv1.conv." + name[len("conv1."):]
        elif name.startswith("bn1."):
            name = "conv1.bn." + name[len("bn1."):]
        else:
            parts = name.split(".")  # layerL, b, what, ...
            rest = ".".join(parts[2:])
            for old, new in authors:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            else:
                what = parts[2]
                if what.startswith("conv"):
                    rest = f"{what}.conv." + ".".join(parts[3:])
                elif what.startswith("bn"):
                    rest = f"conv{what[2:]}.bn." + ".".join(parts[3:])
                elif what == "downsample":
                    rest = ("downsample.conv." if parts[3] == "0" else "downsample.bn.") + \
                        ".".join(parts[4:])
            name = ".".join(parts[:2]) + "." + rest
        out["backbone." + name] = value
    return out


class NoReleaseReference(ValueError):
    """A record whose family this pipeline has no PyTorch reference for (yet)."""


# Families converted and checked against their references in the test suite, not (yet)
# through this pipeline: layout (or architecture) -> the test file holding the parity check.
PARITY_IN_TESTS = {"torchvision_video": "tests/test_video3d.py",
                   "mmaction2_r2plus1d": "tests/test_video3d.py",
                   "vmz": "tests/test_video3d.py",
                   "pytorchvideo": "tests/test_video3d_r50_p3d.py",
                   "tcpnet": "tests/test_tcp.py",
                   "online": "tests/test_streaming.py",
                   "squeezetime": "tests/test_squeezetime.py"}


def parity_test_file(record):
    """The test file checking a record's conversion against its PyTorch reference, for the
    families outside this pipeline; None for the others."""
    return (PARITY_IN_TESTS.get(record["architecture"])
            or PARITY_IN_TESTS.get(record["layout"]))


def _architecture(record):
    """(family, temporal, depth, frames): family 'resnet', 'mobilenetv2', or one of the
    zoo families with a reference of their own ('tada2d', 'res2net', 'eca')."""
    from keras_tin import architectures

    parsed = architectures.parse(record["architecture"])
    frames = record["frames"] or 1
    temporal = parsed.temporal or "tsn"
    if parsed.standalone or record.get("online") or record["layout"] in PARITY_IN_TESTS:
        raise NoReleaseReference(f"No PyTorch reference for the release pipeline of "
                                 f"{record['architecture']!r}; its parity is checked in "
                                 f"{parity_test_file(record)}.")
    if parsed.backbone == "mobilenetv2":
        return "mobilenetv2", temporal, None, frames
    if parsed.backbone == "res2net":
        return "res2net", temporal, parsed.depth, frames
    if parsed.channel_attention == "eca":
        return "eca", temporal, parsed.depth, frames
    if temporal == "tada2d":
        return "tada2d", temporal, parsed.depth, frames
    if temporal not in ("tin", "tsm", "tsn"):
        raise NoReleaseReference(f"No PyTorch reference for the release pipeline of "
                         f"{record['architecture']!r}.")
    return "resnet", temporal, parsed.depth, frames


# Families whose PyTorch reference carries the publisher's own key names (after a
# DataParallel "module." prefix is dropped), so a publisher state dict loads as it is.
OWN_KEYS = ("mobilenetv2", "tada2d", "res2net", "eca")


def _untrained_reference(record, classes):
    """The PyTorch reference of a record's architecture, in its publisher's module tree where
    the reference has one (MobileNetV2, TAda2D, Res2Net/TEA, ECA), else with mmaction2's
    names (TIN/TSM/TSN ResNets)."""
    sys.path.insert(0, HERE)
    family, temporal, depth, frames = _architecture(record)
    if family == "mobilenetv2":
        import torch_reference_mobilenet as trm
        if temporal == "tin":
            raise ValueError("The PyTorch reference has no TIN-MobileNetV2 (no such checkpoint "
                             "is published).")
        if record["layout"] == "openmmlab":
            return trm.MMRecognizer(frames, classes, shift=temporal == "tsm")
        if record["layout"] == "authors":
            return trm.MITTSN(frames, classes, shift=temporal == "tsm")
        return trm.TorchvisionMobileNetV2(classes)
    if family == "tada2d":
        import torch_reference_tada as trt
        return trt.TAda2DResNet(classes)
    if family == "res2net":
        import torch_reference_tea as trr
        if temporal == "tsn" and frames == 1:  # the ImageNet backbone, the authors' names
            return trr.Res2Net(None, 1, classes)
        return trr.Release("tea" if temporal == "tea" else None, frames, classes)
    if family == "eca":
        import torch_reference_eca as tre
        if temporal != "tsn":
            raise ValueError(f"ECA checkpoints are ImageNet backbones; no reference for "
                             f"{record['architecture']!r}.")
        return tre.ECAResNet(depth, tuple(record["eca_kernel_sizes"]), classes)
    import torch_reference as tr
    kwargs = {"non_local": record["non_local"]} if record.get("non_local") else {}
    return tr.Recognizer(temporal, depth, frames, classes, **kwargs)


def _reference_logits(record, ref, folded):
    """The reference's logits for folded, normalised frames (N*T, 3, H, W)."""
    import torch

    family, _, _, frames = _architecture(record)
    with torch.no_grad():
        if family == "tada2d":  # the TAdaConv models take (N, 3, T, H, W) clips
            n, c, h, w = folded.shape
            clips = folded.reshape(n // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)
            return ref(clips).numpy()
        logits = ref(folded).numpy()
    if family == "eca" and frames > 1:  # the image model per frame, logits averaged
        logits = logits.reshape(-1, frames, logits.shape[-1]).mean(1)
    return logits


def reference_model(record, state_dict):
    """The PyTorch reference of a record, loaded strictly with its original weights."""
    import torch

    ref = _untrained_reference(record, record["classes"]).eval()
    if _architecture(record)[0] not in OWN_KEYS:
        keys = to_reference_keys(state_dict, record["layout"])
    elif _architecture(record)[0] == "res2net" and not isinstance(
            ref, sys.modules["torch_reference_tea"].Res2Net):
        keys = dict(state_dict)  # the TSN wrapper's own module.base_model / new_fc names
    else:  # these references carry the publishers' own key names
        keys = {k[len("module."):] if k.startswith("module.") else k: v
                for k, v in state_dict.items()}
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in keys.items()}
    # num_batches_tracked is bookkeeping some files lack; everything else must match.
    missing, unexpected = ref.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"The PyTorch reference does not fit '{record['name']}': missing "
                         f"{missing[:10]}, unexpected {unexpected[:10]}")
    return ref


def parity(record, state_dict, weights_path, size, seed=0):
    """Max |keras - torch| of the logits, the written .weights.h5 against the original."""
    import torch

    from keras_tin.weights.loading import build_for_record

    frames = 1 if record["frames"] is None else record["frames"]
    rng = np.random.default_rng(seed)
    clips = rng.uniform(0, 255, (PARITY_CLIPS, frames, size, size, 3)).astype("float32")
    model = build_for_record(record, input_shape=(frames, size, size, 3),
                             classifier_activation=None)
    model.load_weights(weights_path)
    got = np.asarray(model.predict(clips, verbose=0))
    mean, std = np.float32(record["mean"]), np.float32(record["std"])
    folded = ((clips - mean) / std).reshape(-1, size, size, 3).transpose(0, 3, 1, 2)
    ref = reference_model(record, state_dict)
    want = _reference_logits(record, ref, torch.from_numpy(np.ascontiguousarray(folded)))
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    tolerance = 1e-4 * max(1.0, scale)
    return {"checked": True, "max_abs_diff": err, "max_abs_logit": scale,
            "tolerance": tolerance, "passed": err <= tolerance, "clips": PARITY_CLIPS,
            "frames": frames, "size": size, "seed": seed, "torch": torch.__version__}


def convert_to_file(record, state_dict, weights_path):
    """Converts a publisher state dict into the record's model and saves it as .weights.h5."""
    from keras_tin.weights import convert
    from keras_tin.weights.loading import build_for_record

    model = build_for_record(record)
    convert.assign_state_dict(model, state_dict, record["layout"], verbose=False)
    model.save_weights(weights_path)


def release(name, out_dir=DEFAULT_OUT, source=None, allow_unverified=False, parity_size=112,
            check_parity=True, log=print, cache_dir=None):
    """Converts one manifest record; returns the sidecar dict. Raises if parity fails.
    cache_dir: where downloads go (default: the Keras cache)."""
    import keras

    import keras_tin
    from keras_tin.weights import pth_reader
    from keras_tin.weights import registry

    record = registry.get_record(name)
    started = time.time()
    if source is None:
        log(f"[{name}] downloading {record.get('url') or record.get('download_page')}")
        source = registry.download(name, cache_dir=cache_dir, allow_unverified=allow_unverified)
    else:
        log(f"[{name}] using {source}")
    source_sha = registry.verify_hash(source, record.get("sha256"), record.get("sha256_prefix"),
                                      name, allow_unverified)
    state_dict = pth_reader.extract_state_dict(pth_reader.read_checkpoint(source))
    log(f"[{name}] converting ({record['architecture']}, {record['layout']} layout)")
    os.makedirs(out_dir, exist_ok=True)
    weights_path = os.path.join(out_dir, f"{name}.weights.h5")
    convert_to_file(record, state_dict, weights_path)
    sidecar = {
        "name": name,
        "architecture": record["architecture"],
        "non_local": record.get("non_local"),
        "frames": record["frames"], "classes": record["classes"],
        "dataset": record["dataset"], "labels": record.get("labels"),
        "normalization": record["normalization"], "mean": record["mean"], "std": record["std"],
        "source": {"url": record.get("url"), "file": os.path.basename(source),
                   "sha256": source_sha, "sha256_prefix": record.get("sha256_prefix"),
                   "layout": record["layout"], "license": record.get("license")},
        "converted": {"file": os.path.basename(weights_path),
                      "sha256": registry.sha256_of(weights_path),
                      "bytes": os.path.getsize(weights_path)},
        "versions": {"keras_tin": getattr(keras_tin, "__version__", None),
                     "keras": keras.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if not check_parity:
        sidecar["parity"] = {"checked": False, "reason": "--no-parity"}
    else:
        try:
            import torch  # noqa: F401
        except ImportError:
            sidecar["parity"] = {"checked": False, "reason": "torch is not installed"}
        else:
            log(f"[{name}] parity against PyTorch at {parity_size} px")
            sidecar["parity"] = parity(record, state_dict, weights_path, parity_size)
    with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    p = sidecar["parity"]
    verdict = (f"max |keras - torch| {p['max_abs_diff']:.2e} (tolerance {p['tolerance']:.1e})"
               if p["checked"] else f"parity not checked: {p['reason']}")
    log(f"[{name}] wrote {weights_path} (sha256 {sidecar['converted']['sha256'][:16]}...); "
        f"{verdict}; {time.time() - started:.1f} s")
    if p["checked"] and not p["passed"]:
        raise RuntimeError(f"'{name}': parity failed, {verdict}. The converted file is kept "
                           f"at {weights_path} for inspection; do not publish it.")
    return sidecar


def _publisher_state_dict(record, seed):
    """A random-weight PyTorch reference of the record's architecture, in its publisher's key
    layout (for the README's parity column: real files cannot be downloaded everywhere)."""
    import torch

    sys.path.insert(0, HERE)
    ref = _untrained_reference(record, record["classes"])
    family = _architecture(record)[0]
    if family == "mobilenetv2":
        import torch_reference_mobilenet as trm
        frames = record["frames"] or 1
        calibration = torch.randn(2 * frames, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
        trm.randomize(ref, seed, calibrate_with=calibration)
        return ref.release_state_dict() if record["layout"] == "authors" else ref.state_dict()
    if family == "tada2d":
        import torch_reference_tada as trt
        frames = record["frames"] or 1
        calibration = torch.randn(2, 3, frames, 48, 48,
                                  generator=torch.Generator().manual_seed(seed))
        return trt.randomize(ref, seed, calibrate_with=calibration).state_dict()
    if family in ("res2net", "eca"):
        import torch_reference as tr
        state = tr.randomize(ref, seed=seed).state_dict()
        if family == "eca":  # the release is a DataParallel training checkpoint
            return {"module." + k: v for k, v in state.items()}
        return state
    import torch_reference as tr
    state = tr.randomize(ref, seed=seed).state_dict()
    if record["layout"] == "openmmlab":
        return state
    state = tr.to_authors_layout(state)
    if record["layout"] == "torchvision":
        state = {k.replace("module.base_model.", "").replace("module.new_fc.", "fc."): v
                 for k, v in state.items()}
    return state


def reference_parity(size=48, log=print):
    """{(architecture, non_local, layout): parity dict} on random weights, for every
    combination the manifest holds, through the same conversion and parity code."""
    from keras_tin.weights import registry

    results = {}
    for name in registry.list_pretrained():
        record = registry.get_record(name)
        key = (record["architecture"], record.get("non_local"), record["layout"])
        if key in results or parity_test_file(record) or record.get("online"):
            continue  # measured in its family's tests (PARITY_IN_TESTS)
        fake = dict(record, classes=7, frames=record["frames"] or 1)
        state = {k: v.numpy() for k, v in _publisher_state_dict(fake, len(results)).items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.weights.h5")
            convert_to_file(fake, state, path)
            results[key] = parity(fake, state, path, size)
        log(f"{key}: {results[key]['max_abs_diff']:.1e}")
    return results


PUBLISHERS = {"openmmlab": "mmaction2", "authors": None, "torchvision": "torchvision",
              "tadaconv": "TAdaConv (Alibaba)", "torchvision_video": "torchvision",
              "mmaction2_r2plus1d": "mmaction2", "vmz": "VMZ / ig65m-pytorch",
              "pytorchvideo": "pytorchvideo", "tcpnet": "TCPNet authors",
              "online": "MIT TSM (online demo)"}


def model_table(parity_results):
    """The README's table of every manifest record (markdown)."""
    from keras_tin.weights import registry

    rows = ["| name | publisher | dataset | frames | reported top-1 / top-5 | test protocol "
            "(publisher) | labels | parity (layout: max abs logit diff, random weights) |",
            "|---|---|---|---|---|---|---|---|"]
    for name in registry.list_pretrained():
        r = registry.get_record(name)
        publisher = PUBLISHERS[r["layout"]] or ("MIT TSM" if "mit.edu" in str(r.get("url"))
                                                else "Res2Net authors" if "res2net" in name
                                                else "TIN authors (X-Temporal)")
        if r["architecture"].startswith("eca_"):
            publisher = "ECA-Net authors"
        if name.endswith("openmmlab0x"):
            publisher = "mmaction2 0.x"
        if r["architecture"] == "squeezetime":
            publisher = "SqueezeTime authors (Huawei Noah)"
        acc = f"{r['top1']}" + (f" / {r['top5']}" if r.get("top5") is not None else "")
        p = parity_results.get((r["architecture"], r.get("non_local"), r["layout"]))
        if parity_test_file(r):
            par = f"{r['layout']}: in `{parity_test_file(r)}` (logits within 1e-4)"
        else:
            par = (f"{r['layout']}: {p['max_abs_diff']:.1e}" if p
                   else f"{r['layout']}: not measured")
        frames = r["frames"] if r["frames"] else "image"
        rows.append(f"| `{name}` | {publisher} | {r['dataset']} | {frames} | {acc} | "
                    f"{r['protocol']} | {r.get('labels') or '-'} | {par} |")
    return "\n".join(rows)


def main(argv=None):
    from keras_tin.weights import registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="manifest record names")
    parser.add_argument("--all", action="store_true", help="every record with a download URL")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument("--source", help="a local copy of the publisher's file (one name only); "
                                         "its hash is still checked")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept records without a published hash (MIT files)")
    parser.add_argument("--parity-size", type=int, default=112, help="parity clip size (px)")
    parser.add_argument("--no-parity", action="store_true", help="skip the PyTorch check")
    parser.add_argument("--table", action="store_true",
                        help="print the README's model table, measuring each architecture "
                             "and layout's conversion parity on random weights")
    args = parser.parse_args(argv)
    if args.table:
        print(model_table(reference_parity(log=lambda m: print(m, file=sys.stderr))))
        return 0
    names = list(args.names)
    if args.all:
        names = [n for n in registry.list_pretrained() if registry.get_record(n).get("url")]
    if not names:
        parser.error("name at least one record, or --all. Records: "
                     + ", ".join(registry.list_pretrained()))
    if args.source and len(names) != 1:
        parser.error(f"--source takes one record; received {len(names)}: {names}")
    failed = []
    for i, name in enumerate(names, 1):
        print(f"== {i}/{len(names)} {name}")
        try:
            release(name, args.out, args.source, args.allow_unverified, args.parity_size,
                    not args.no_parity)
        except (ValueError, ConnectionError, RuntimeError, OSError) as e:
            hint = (" Or pass a local copy of the publisher's file: --source PATH."
                    if isinstance(e, ConnectionError) else "")
            print(f"[{name}] FAILED: {e}{hint}")
            failed.append(name)
    print(f"{len(names) - len(failed)} released, {len(failed)} failed"
          + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
