"""ImageNet initialisation of the A2U encoder from a torchvision-format ResNet-34 state dict (docs/model.md §3.6).

The official code copied mapillary's inplace_abn ResNet-34 (LeakyReLU-trained) whose download is dead; torchvision's
ReLU-trained ResNet-34 is the documented substitute. ``model.pretrained`` selects the source:

- ``none``: keep the §3.6 Xavier initialisation;
- ``torchvision``: ``<torch hub dir>/checkpoints/resnet34-b627a593.pth`` (``$TORCH_HOME/hub``, default
  ``~/.cache/torch/hub``), downloaded from torchvision's URL with ``torch.hub`` when missing and the machine is online;
- any other value: a local file in torchvision's key format (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``...).

Mapping (the A2U encoder is ResNet-34 truncated to [3, 4, 4] blocks with the stride moved into A2U downsampling):
``conv1`` → ``layer0.0`` (RGB input channels copied, the trimap channel set to 0), ``bn1`` → ``layer0.1``,
``layer1.{0-2}`` → ``layer1.block{1-3}.convs``, ``layer{2,3}.0`` → ``layer{2,3}_1`` (its stride-2 conv1 reused at
stride 1, the stride-2 projection kept), ``layer{2,3}.{1-3}`` → ``layer{2,3}_2.block{1-3}.convs``. Dropped:
``layer3.4``/``layer3.5``, ``layer4`` and ``fc``. Everything else (A2U generators, ASPP, decoder, skips, head) keeps
its initialisation. torchvision is not needed: the file is read with ``torch.load``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["PretrainedWeightsError", "PretrainedReport", "TORCHVISION_RESNET34_URL", "TORCHVISION_RESNET34_FILE",
           "resnet34_shapes", "torchvision_cache_path", "resolve_pretrained", "read_resnet34_state_dict",
           "load_resnet34_into", "load_pretrained_encoder"]

log = logging.getLogger(__name__)

TORCHVISION_RESNET34_FILE = "resnet34-b627a593.pth"
TORCHVISION_RESNET34_URL = f"https://download.pytorch.org/models/{TORCHVISION_RESNET34_FILE}"
RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET34_WIDTHS = (64, 128, 256, 512)
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_OPTIONAL_SUFFIX = "num_batches_tracked"  # older torchvision files do not carry it


class PretrainedWeightsError(ValueError):
    """The pretrained-weights source is missing, unreadable, or not a torchvision ResNet-34; the message says which."""


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained_encoder` did: target key ← source key, and the keys left alone with the reason."""
    source: str
    loaded: dict[str, str] = field(default_factory=dict)         # A2U key -> ResNet-34 key
    dropped: dict[str, str] = field(default_factory=dict)        # ResNet-34 key -> why it was not used
    not_loaded: dict[str, str] = field(default_factory=dict)     # A2U key -> why it keeps its initialisation

    def summary(self) -> str:
        """A few lines for the log: counts, and the reasons grouped."""
        def grouped(entries: dict[str, str]) -> str:
            counts: dict[str, int] = {}
            for reason in entries.values():
                counts[reason] = counts.get(reason, 0) + 1
            return "; ".join(f"{n} × {reason}" for reason, n in counts.items())

        return (f"pretrained encoder from {self.source}: loaded {len(self.loaded)} tensors; "
                f"dropped {len(self.dropped)} ImageNet tensors ({grouped(self.dropped)}); "
                f"{len(self.not_loaded)} A2U tensors keep their initialisation ({grouped(self.not_loaded)})")


def resnet34_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of torchvision's ``resnet34().state_dict()`` (BasicBlocks [3, 4, 6, 3], 1000-class fc)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn_shapes(shapes, "bn1", 64)
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip(RESNET34_BLOCKS, RESNET34_WIDTHS), start=1):
        for b in range(blocks):
            prefix = f"layer{stage}.{b}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_ch if b == 0 else width, 3, 3)
            _bn_shapes(shapes, f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            _bn_shapes(shapes, f"{prefix}.bn2", width)
            if b == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (width, in_ch, 1, 1)
                _bn_shapes(shapes, f"{prefix}.downsample.1", width)
        in_ch = width
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def _bn_shapes(shapes: dict[str, tuple[int, ...]], prefix: str, channels: int) -> None:
    for suffix in _BN_SUFFIXES:
        shapes[f"{prefix}.{suffix}"] = () if suffix == _OPTIONAL_SUFFIX else (channels,)


def _module_map() -> tuple[dict[str, str], dict[str, str]]:
    """(ResNet-34 module prefix → A2U module prefix, dropped ResNet-34 prefix → reason)."""
    pairs = {"conv1": "layer0.0", "bn1": "layer0.1"}
    for b in range(3):
        for part in ("conv1", "bn1", "conv2", "bn2"):
            pairs[f"layer1.{b}.{part}"] = f"layer1.block{b + 1}.convs.{part}"
    for stage in (2, 3):
        first = f"layer{stage}_1"
        pairs.update({f"layer{stage}.0.conv1": f"{first}.layer1.conv1", f"layer{stage}.0.bn1": f"{first}.layer1.bn1",
                      f"layer{stage}.0.conv2": f"{first}.layer2.conv2", f"layer{stage}.0.bn2": f"{first}.layer2.bn2",
                      f"layer{stage}.0.downsample.0": f"{first}.proj_conv",
                      f"layer{stage}.0.downsample.1": f"{first}.proj_bn"})
        for b in range(1, 4):
            for part in ("conv1", "bn1", "conv2", "bn2"):
                pairs[f"layer{stage}.{b}.{part}"] = f"layer{stage}_2.block{b}.convs.{part}"
    dropped = {"layer3.4": "ImageNet layer3 block 5 (A2U layer3 has 4 blocks)",
               "layer3.5": "ImageNet layer3 block 6 (A2U layer3 has 4 blocks)",
               "layer4": "ResNet stage 4 (A2U has no stage 4)",
               "fc": "ImageNet classifier"}
    return pairs, dropped


def torchvision_cache_path() -> Path:
    """Where torchvision caches the file: ``torch.hub.get_dir()/checkpoints`` (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_RESNET34_FILE


def resolve_pretrained(source: str | os.PathLike | None, url: str = TORCHVISION_RESNET34_URL) -> Path | None:
    """``none`` → None; ``torchvision`` → the cached file (downloaded if missing); else an existing local path."""
    if source is None or str(source).strip().lower() in ("", "none"):
        return None
    if str(source).strip().lower() == "torchvision":
        cached = torchvision_cache_path()
        if cached.is_file():
            return cached
        log.info("downloading ImageNet ResNet-34 weights from %s to %s", url, cached.parent)
        try:
            torch.hub.load_state_dict_from_url(url, model_dir=str(cached.parent), map_location="cpu",
                                               progress=True, check_hash=True, file_name=TORCHVISION_RESNET34_FILE)
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors, hash mismatch: all mean "no file"
            raise PretrainedWeightsError(
                f"model.pretrained=torchvision: {cached} is not cached and downloading {url} failed "
                f"({type(exc).__name__}: {exc}). On an offline machine, copy the file there (or set $TORCH_HOME), "
                f"or give a local path: model.pretrained=/path/to/{TORCHVISION_RESNET34_FILE}") from exc
        if not cached.is_file():
            raise PretrainedWeightsError(f"model.pretrained=torchvision: download finished but {cached} is missing")
        return cached
    path = Path(source).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"model.pretrained: weights file {path} does not exist (give none, torchvision "
                                     "or the path of a torchvision ResNet-34 state dict)")
    return path


def read_resnet34_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``path`` and check it is a torchvision ResNet-34 state dict: every key present, none extra, shapes exact.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, with or without a
    ``module.`` prefix (DDP saves). Raises :class:`PretrainedWeightsError` naming the file and the first problem.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PretrainedWeightsError(f"pretrained weights file {path} does not exist") from exc
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of many types: the file is not a torch save
        raise PretrainedWeightsError(f"{path} is not a readable PyTorch weights file "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and "conv1.weight" not in obj:
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state dict of tensors (got {type(obj).__name__}"
                                     f"{' with keys ' + ', '.join(list(map(str, obj))[:5]) if isinstance(obj, dict) else ''})")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    expected = resnet34_shapes()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} ResNet-34 tensors missing (first: {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} tensors a ResNet-34 does not have (first: {', '.join(extra[:3])})")
        raise PretrainedWeightsError(f"{path} is not a torchvision ResNet-34 state dict: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != expected[key]:
            raise PretrainedWeightsError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, a ResNet-34 has "
                                         f"{expected[key]}; this file does not fit the A2U encoder")
    return state


def load_resnet34_into(net: nn.Module, state: dict[str, torch.Tensor], source: str = "<state dict>") -> PretrainedReport:
    """Copy a checked ResNet-34 state dict into the encoder of ``net`` (an ``A2UMatting``), in place."""
    pairs, dropped_prefixes = _module_map()
    targets = net.state_dict()  # shares storage with the parameters and buffers
    report = PretrainedReport(source=source)
    planned: list[tuple[str, str]] = []
    for src_key in state:
        module, suffix = src_key.rsplit(".", 1)
        if module in pairs:
            dst_key = f"{pairs[module]}.{suffix}"
            if dst_key not in targets:
                raise PretrainedWeightsError(f"{source}: the network has no tensor {dst_key} for {src_key}; "
                                             "is it an A2UMatting?")
            planned.append((src_key, dst_key))
        else:
            reason = next((r for p, r in dropped_prefixes.items() if module == p or module.startswith(p + ".")), None)
            if reason is None:  # read_resnet34_state_dict has already refused keys outside ResNet-34
                raise PretrainedWeightsError(f"{source}: no place for tensor {src_key} in the A2U encoder")
            report.dropped[src_key] = reason
    for src_key, dst_key in planned:  # check every shape before changing anything
        src, dst = state[src_key], targets[dst_key]
        want = (dst.shape[0], 3) + tuple(dst.shape[2:]) if dst_key == "layer0.0.weight" else tuple(dst.shape)
        if dst_key == "layer0.0.weight" and dst.shape[1] != 4:
            raise PretrainedWeightsError(f"{source}: network stem {dst_key} has {dst.shape[1]} input channels, "
                                         "expected 4 (RGB + trimap)")
        if tuple(src.shape) != want:
            raise PretrainedWeightsError(f"{source}: tensor {src_key} has shape {tuple(src.shape)} but {dst_key} "
                                         f"needs {want}")
    with torch.no_grad():
        for src_key, dst_key in planned:
            src, dst = state[src_key], targets[dst_key]
            if dst_key == "layer0.0.weight":
                dst[:, :3].copy_(src)
                dst[:, 3:].zero_()  # the trimap channel starts without influence (§3.6)
            else:
                dst.copy_(src.to(dst.dtype) if dst.is_floating_point() else src)
            report.loaded[dst_key] = src_key
    loaded = set(report.loaded)
    for dst_key in targets:
        if dst_key not in loaded:
            report.not_loaded[dst_key] = _why_not_loaded(dst_key)
    return report


def _why_not_loaded(key: str) -> str:
    if ".bilinear" in key or key.startswith("bilinear"):
        return "A2U kernel generator (no ImageNet counterpart)"
    if key.endswith(_OPTIONAL_SUFFIX):
        return "BN batch counter absent from the file"
    if key.startswith(("dconv_pp", "decoder_layer", "short", "pred")):
        return "ASPP/decoder/skip/head (not part of ResNet-34)"
    return "no ResNet-34 counterpart"


def load_pretrained_encoder(net: nn.Module, source: str | os.PathLike | None,
                            url: str = TORCHVISION_RESNET34_URL) -> PretrainedReport | None:
    """Apply ``model.pretrained`` (``none`` | ``torchvision`` | PATH) to ``net`` in place; None for ``none``.

    Call on the bare network, before DDP wrapping and before any checkpoint restore. Logs the report summary.
    """
    path = resolve_pretrained(source, url)
    if path is None:
        return None
    report = load_resnet34_into(net, read_resnet34_state_dict(path), source=str(path))
    log.info(report.summary())
    return report
