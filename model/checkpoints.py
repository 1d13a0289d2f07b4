"""Loading the released A2U checkpoints (``model_best.pth`` of ``dongdong93/a2u_matting``) into :class:`A2UMatting`.

Format assumed (docs/model.md §3 and the official ``test.py``, which calls ``net.load_state_dict(ckpt['state_dict'])``
on a wrapper holding the net as ``.module``): a dict whose ``"state_dict"`` maps ``module.<official name>`` to tensors
(a bare state dict, or one without the prefix, is accepted too). Official names are the module names of
``ResNet34DecoderLearning``: ``layer0.0/1``, ``bilinear0``/``bilinear1`` and ``layerN_1.bilinear`` (generators:
``bconv_UP.1``, ``bconv_DP.1``, ``bconv_U.1``, ``bconv_V.1``, ``bnu.0``, ``bnv.0``), ``layer1.blockK.convs.{conv,bn}{1,2}``,
``layerN_1.layer1.{conv1,bn1}``/``layer2.{conv2,bn2}``/``proj_conv``/``proj_bn``, ``dconv_pp.asppK.atrous_conv.I``,
``dconv_pp.global_avg_pool.{1,2}``, ``dconv_pp.bottleneck_conv.{0,1}``, ``decoder_layerK.{dconv,dconv1}.dep_sep_conv.*``,
``shortK.{0,1}``, ``pred.0.0``, ``pred.0.1``, ``pred.1``. :class:`A2UMatting` uses exactly these names, so the key map
is the identity after stripping ``module.``; the name list was read off the official source, not checked against a
downloaded checkpoint (the weights are behind Google-Drive links), so loading is strict and reports any mismatch.

Conversions: InPlaceABN normalises with |γ| + ε (ε = 1e-5) instead of γ, so every batch-norm weight becomes
|γ| + 1e-5; ABN has no ``num_batches_tracked`` buffer, so it is set to 0. GroupNorm weights of the generators are
plain torch GroupNorm and are copied unchanged.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from model.net import A2UMatting, batchnorm_modules

__all__ = ["ABN_EPS", "convert_official_state_dict", "load_official_checkpoint", "infer_official_options"]

ABN_EPS = 1e-5
logger = logging.getLogger(__name__)


def _unwrap(checkpoint: Mapping, source: str) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{source}: not an A2U checkpoint (expected a dict with a non-empty 'state_dict')")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith("module."):
            name = name[len("module."):]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[name] = value
    return out


def infer_official_options(state: Mapping[str, torch.Tensor]) -> dict:
    """A2UMatting options implied by a (prefix-stripped) official state dict: share and up kernel size (G = 1)."""
    if "bilinear0.bconv_U.1.weight" not in state:
        return {"upsampler": "bilinear"}
    share = state["bilinear0.bconv_U.1.weight"].shape[0] == 1
    entries = state["bilinear0.bconv_UP.1.weight"].shape[0]  # 4·s²·G·d with G = d = 1 released
    s = math.isqrt(entries // 4)
    return {"share": bool(share), "up_kernel_size": s}


def convert_official_state_dict(checkpoint: Mapping, net: nn.Module, source: str = "checkpoint") -> dict:
    """Map an official checkpoint (or its state dict) onto ``net``'s state-dict keys, converting ABN weights.

    Raises ``ValueError`` naming ``source`` for missing or unexpected keys and for shape mismatches.
    """
    state = _unwrap(checkpoint, source)
    target = net.state_dict()
    bn_names = {name for name, _ in batchnorm_modules(net)}
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            continue
        module_name, _, leaf = key.rpartition(".")
        if module_name in bn_names and leaf == "weight":
            value = value.abs() + ABN_EPS
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the net expects "
                             f"{tuple(target[key].shape)} (wrong share/kernel-size options?)")
        converted[key] = value.to(target[key].dtype)
    for name in bn_names:
        key = f"{name}.num_batches_tracked"
        if key in target and key not in converted:
            converted[key] = torch.zeros_like(target[key])
    missing = sorted(set(target) - set(converted))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(f"{source}: keys do not match the A2U net: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''} ({len(missing)}), unexpected {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})")
    return converted


def load_official_checkpoint(path: str | Path, net: A2UMatting | None = None, map_location: str = "cpu",
                             trusted: bool = False) -> A2UMatting:
    """Load an official ``.pth`` into ``net`` (built from the checkpoint's own options when ``None``); return it.

    ``trusted=False`` unpickles with ``weights_only=True``; pass ``trusted=True`` only for files from a trusted
    source whose extra entries (training history) need the full unpickler.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"{path}: cannot read the checkpoint ({exc}); if the file is trusted, retry with "
                         f"trusted=True") from exc
    state = _unwrap(checkpoint, str(path))
    if net is None:
        net = A2UMatting(**infer_official_options(state))
    net.load_state_dict(convert_official_state_dict(state, net, str(path)))
    logger.info("loaded official A2U checkpoint %s (%d tensors)", path, len(state))
    return net
