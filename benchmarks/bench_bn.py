"""How much of a model's real-photo error is BatchNorm statistics: SAD on a Composition-1k-layout folder with
(a) the running statistics learnt in training, (b) each image's own batch statistics (train-mode BN, batch 1),
(c) the image's own statistics in one part of the net only (ASPP, decoder, encoder stages), and
(d) running statistics re-estimated on full-size synthetic training composites (no real image involved).

    .venv/bin/python benchmarks/bench_bn.py CHECKPOINT_OR_URI datasets/real-dev --train runs/demo/data

(d) composites the `fg`/`bg` shards of --train at their stored size (fg * a + bg * (1 - a), trimap from the alpha as
data_prep makes test trimaps), so the statistics come from training data at evaluation-like image sizes.
Every row runs the eager net as trained (`A2U_CPU_INFERENCE=reference`): the fast CPU path folds the running
statistics into the convolutions, so it would ignore train-mode BatchNorm layers and their hooks.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from data_prep.compositing import trimap_from_alpha  # noqa: E402
from data_prep.reader import iter_samples  # noqa: E402
from jobs.evaluate import score, trimap_only_score  # noqa: E402
from jobs.model_uri import load_net  # noqa: E402
from model.cpu_inference import cpu_inference  # noqa: E402
from model.inference import prepare_input  # noqa: E402


def _decode(data: bytes, mode: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def train_composites(shards: Path, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, trimap) uint8 pairs: each training foreground over the background of the same index."""
    fgs = [m for t in sorted(shards.glob("fg-*.tar")) for _, m in iter_samples(t)]
    bgs = [m for t in sorted(shards.glob("bg-*.tar")) for _, m in iter_samples(t)]
    out = []
    for i, fg_m in enumerate(fgs[:limit]):
        fg, alpha = _decode(fg_m["fg.png"], "RGB"), _decode(fg_m["alpha.png"], "L")
        bg = _decode(next(v for k, v in bgs[i % len(bgs)].items() if k.startswith("bg")), "RGB")
        bg = np.asarray(Image.fromarray(bg).resize(fg.shape[1::-1], Image.BICUBIC)) if bg.shape != fg.shape else bg
        a = alpha[..., None].astype(np.float32) / 255
        image = np.clip(np.rint(fg * a + bg * (1 - a)), 0, 255).astype(np.uint8)
        out.append((image, trimap_from_alpha(alpha)))
    return out


def batch_stats_mode(net: torch.nn.Module, prefix: str = "") -> None:
    """Eval mode except BN layers (those whose name starts with `prefix`), which normalise with the current batch's statistics; a BN fed 1x1 maps (the ASPP
    image-pooling branch at batch 1) keeps its running statistics, since one value per channel has no variance."""
    net.eval()
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name.startswith(prefix):
            m.register_forward_pre_hook(lambda mod, inp: setattr(mod, "training", inp[0][0].numel() > inp[0].shape[1]))


@torch.no_grad()
def recalibrate(net: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], prefix: str = "") -> None:
    """Replace the running statistics of every BN layer whose name starts with `prefix` by their cumulative average over `pairs` (batch 1 each)."""
    bns = [m for name, m in net.named_modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name.startswith(prefix)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    batch_stats_mode(net, prefix)
    for image, trimap in pairs:
        x = prepare_input(image, trimap)
        net(x)
    for m in bns:
        m._forward_pre_hooks.clear()
        m.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--train", type=Path, required=True, help="shard directory with fg-*/bg-* shards")
    p.add_argument("--limit", type=int, default=64)
    args = p.parse_args()
    with cpu_inference("reference"):
        return _table(args)


def _table(args: argparse.Namespace) -> int:
    floor = trimap_only_score(args.data)["SAD"]
    rows = []
    net = load_net(args.model, "cpu")
    rows.append(("running statistics (as trained)", score(net, args.data, None)[0]["SAD"]))
    batch_stats_mode(net)
    rows.append(("each image's own statistics", score(net, args.data, None)[0]["SAD"]))
    for prefix, where in (("dconv_pp", "ASPP"), ("decoder", "decoder"), ("layer", "encoder stages")):
        net = load_net(args.model, "cpu")
        batch_stats_mode(net, prefix)
        rows.append((f"each image's own statistics in the {where} only", score(net, args.data, None)[0]["SAD"]))
    pairs = train_composites(args.train, args.limit)
    size = max(max(im.shape[:2]) for im, _ in pairs)
    for prefix, where in (("", "every BN"), ("dconv_pp", "the ASPP's BN only")):
        net = load_net(args.model, "cpu")
        recalibrate(net, pairs, prefix)
        rows.append((f"{where} re-estimated on {len(pairs)} synthetic composites of <= {size} px",
                     score(net, args.data, None)[0]["SAD"]))
    print(f"| BN statistics | SAD on {args.data} | / trimap-only {floor:.2f} |\n|---|---|---|")
    for name, sad in rows:
        print(f"| {name} | {sad:.3f} | {sad / floor:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
