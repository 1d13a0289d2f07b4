"""The fast CPU inference path of the matting net, and the one switch that chooses it.

Why: on CPU the eager net spends its time in oneDNN convolutions fed NCHW maps (reordered on every call; the 4-channel
input convolutions run 4–13× slower than channels-last), in separate BatchNorm passes over full-resolution maps, and
in the training tap loop of the reassembly (benchmarks/RESULTS.md, "inference on CPU"). The fast path runs an
inference copy of the net with
- every BatchNorm that follows a convolution folded into that convolution's weights and bias,
- weights and activations channels-last,
- the phase-split reassembly of ``model/phase_ops.py`` (chosen in ``model.ops`` whenever no gradient is needed).
It changes results only by float rounding (tests check ≤ 1e-4 against the eager reference).

Modes (``set_cpu_inference`` / ``cpu_inference`` context, default ``$A2U_CPU_INFERENCE``, else ``fast``):
``fast`` — the above; ``reference`` — the eager net as trained (NCHW, BatchNorm, the training tap loop), kept for
comparison and as an escape hatch. Only eval-mode, gradient-free float32 (and float64) CPU calls are affected.
"""
from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn

from model.process_choice import ProcessChoice

__all__ = ["MODES", "ENV", "set_cpu_inference", "cpu_inference", "current_mode", "fold_batchnorm",
           "folded_copy", "inference_copy", "wants_fast_path", "describe", "path_for"]

log = logging.getLogger(__name__)

MODES = ("fast", "reference")
ENV = "A2U_CPU_INFERENCE"
_CACHE_ATTR = "_cpu_inference_cache"
_MODE = ProcessChoice("cpu inference mode", ENV, MODES, "fast")


def set_cpu_inference(mode: str | None) -> None:
    """Choose ``fast`` or ``reference`` for this process; None returns to ``$A2U_CPU_INFERENCE`` (else fast)."""
    _MODE.set(mode)


def cpu_inference(mode: str | None) -> contextlib.AbstractContextManager[None]:
    """``set_cpu_inference`` for the duration of a ``with`` block (benchmarks and tests compare the two)."""
    return _MODE.override(mode)


def current_mode() -> str:
    """The explicit choice, else ``$A2U_CPU_INFERENCE``, else ``fast``."""
    return _MODE.current()


def wants_fast_path(net: nn.Module, x: torch.Tensor) -> bool:
    """True for an eval-mode, gradient-free float32/float64 CPU call outside export, torch.compile and tracing, with
    the mode ``fast`` (float64 runs it too so that tests can check that the rewrite is exact apart from float32
    rounding)."""
    return (not net.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and not torch.compiler.is_exporting()
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and current_mode() == "fast")


def describe(mode: str | None = None) -> str:
    """One line naming the CPU path of ``mode`` (default: the current one), for logs."""
    mode = mode or current_mode()
    if mode == "fast":
        return ("fast CPU path: BatchNorm folded into convolutions, channels-last, phase-split A2U reassembly "
                f"(${ENV}=reference for the eager reference)")
    return "reference CPU path: eager net as trained (NCHW, BatchNorm, training tap loop)"


def path_for(net: nn.Module, device: torch.device) -> str:
    """One line naming the path ``net`` takes on ``device`` for inference (the `jobs predict` log line)."""
    if device.type != "cpu":
        return f"{device.type}: the net as trained (reassembly backend of model/fused_ops.py)"
    if not hasattr(net, "forward_features"):
        return "CPU: the logged torch.export graph as it is (no fast copy of an exported graph)"
    return describe()


# ---------------------------------------------------------------------------------------------------------------------
# BatchNorm folding
# ---------------------------------------------------------------------------------------------------------------------
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` (running statistics) into ``conv`` in place: y = γ·(conv(x) − μ)/σ + β."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        folded = (bias - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(folded, requires_grad=False)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.affine and bn.num_features == conv.out_channels)


def fold_batchnorm(net: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d — consecutive children of an
    ``nn.Sequential``, or a ``proj_conv``/``proj_bn`` pair — and replace it by ``nn.Identity``; returns how many.

    Only valid for inference (running statistics are baked in); use on a copy.
    """
    folded = 0
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, bn = module._modules[first], module._modules[second]
                if _foldable(conv, bn):
                    _fold(conv, bn)
                    module._modules[second] = nn.Identity()
                    folded += 1
        conv, bn = getattr(module, "proj_conv", None), getattr(module, "proj_bn", None)
        if conv is not None and bn is not None and _foldable(conv, bn):
            _fold(conv, bn)
            module.proj_bn = nn.Identity()
            folded += 1
    return folded


# ---------------------------------------------------------------------------------------------------------------------
# the cached inference copy
# ---------------------------------------------------------------------------------------------------------------------
def _fingerprint(net: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or written in place (load_state_dict, an optimiser step)."""
    return tuple((t.data_ptr(), t._version) for t in list(net.parameters()) + list(net.buffers()))


def folded_copy(net: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode, gradient-free copy of ``net`` with its BatchNorms folded and in-place activations, and the
    number folded: the inference copy before its layout change, and what ONNX export writes (fewer nodes)."""
    net.__dict__.pop(_CACHE_ATTR, None)  # never deep-copy an old inference copy along with the net
    copied = copy.deepcopy(net).eval()
    for param in copied.parameters():
        param.requires_grad_(False)
    count = fold_batchnorm(copied)
    for module in copied.modules():
        if isinstance(module, nn.LeakyReLU):
            module.inplace = True
    return copied, count


def inference_copy(net: nn.Module) -> nn.Module:
    """The net's fast CPU inference copy (BatchNorm folded, channels-last, in-place activations), built on first use
    and rebuilt when the net's weights change. Kept outside the module tree: no effect on ``state_dict``,
    ``parameters`` or pickling."""
    key = _fingerprint(net)
    cached = net.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    fast, count = folded_copy(net)
    fast = fast.to(memory_format=torch.channels_last)
    net.__dict__[_CACHE_ATTR] = (key, fast)
    _announce(f"{describe('fast')}; {count} BatchNorm layers folded")
    return fast


def _announce(message: str) -> None:
    """Log ``message`` at INFO, once per built copy. Where INFO would be dropped and nobody has set this module's
    logger (``mlflow models serve`` leaves the root logger at WARNING), this logger gets its own stderr handler at
    INFO, so a server says which path it took; setting this logger's level silences it."""
    if log.level == logging.NOTSET and not log.isEnabledFor(logging.INFO):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    log.info(message)


def drop_cache(state: dict) -> dict:
    """``__getstate__`` helper: a module's pickled state without the inference copy."""
    state = dict(state)
    state.pop(_CACHE_ATTR, None)
    return state
