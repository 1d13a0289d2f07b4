"""Evaluation loader: every sample of the test (or val) split exactly once across ranks, full size, batch 1."""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from formats.encoding import member_name

from .dataset import Dataset, DatasetError, MemberReader
from .decoding import decodes
from .eval_graph import eval_graph
from .loader import default_threads, resolve_device, to_torch

_CHUNK = 4  # samples decoded together (DALI threads work across a batch), handed out one at a time


class EvalLoader:
    """Iterates dicts with image (1x3xHxW), alpha and trimap (1x1xHxW, float [0, 1]), key (str) and size ((H, W))."""

    def __init__(self, dataset_dir: str | os.PathLike, *, split: str = "test", rank: int = 0, world_size: int = 1,
                 device: str = "cpu", num_threads: int | None = None, as_uint8: bool = False) -> None:
        if split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.dataset = Dataset(dataset_dir)
        remedy = (f"run `python -m data_prep synthetic --out {self.dataset.dir}`"
                  + (" (folders/composition1k write val shards only with --val-count N)" if split == "val" else ""))
        self.dataset.require(split, remedy=remedy)
        samples = self.dataset.samples(split)
        n = len(samples)
        self.samples = samples[rank * n // world_size:(rank + 1) * n // world_size]
        self.device, self.device_id = resolve_device(device, rank)
        self.as_uint8 = as_uint8  # consumers that score uint8 mattes skip the float round trip
        self.num_threads = num_threads or default_threads()
        self._reader = MemberReader()
        self.encoding = self.dataset.encoding
        self._names = {m: member_name(m, self.encoding) for m in ("image", "alpha", "trimap")}
        self._graph = eval_graph(_CHUNK, self.num_threads, self.device_id,
                                 "cuda" if self.device.type == "cuda" else "cpu", self.encoding)
        self._graph.build()

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict]:
        for start in range(0, len(self.samples), _CHUNK):
            chunk = self.samples[start:start + _CHUNK]
            data = {m: [self._reader.read(s, k, (name,)) for s, k in chunk] for m, name in self._names.items()}
            for name, batch in data.items():
                self._graph.feed_input(name, batch)
            try:
                image, alpha, trimap = self._graph.run()
            except Exception as exc:  # noqa: BLE001 - name the member the host cannot decode either
                for (shard, key), *members in zip(chunk, data["image"], data["alpha"], data["trimap"]):
                    for m, buf in zip(("image", "alpha", "trimap"), members):
                        if not decodes(buf, self.encoding):
                            raise DatasetError(f"{shard.path}: sample {key!r} has a corrupt {self._names[m]} "
                                               "member; rerun data_prep for this directory") from exc
                raise DatasetError(f"DALI failed on samples {[k for _, k in chunk]} of {self.dataset.dir}: "
                                   f"{exc}") from exc
            for j, (shard, key) in enumerate(chunk):
                img = to_torch(image, j, self.device)
                h, w = img.shape[:2]
                if self.as_uint8:  # the decoded pixels as they are: H x W x 3 and H x W uint8 on the CPU
                    yield {"image": img.cpu().numpy(), "alpha": to_torch(alpha, j, self.device)[..., 0].cpu().numpy(),
                           "trimap": to_torch(trimap, j, self.device)[..., 0].cpu().numpy(), "key": key,
                           "size": (int(h), int(w))}
                    continue
                yield {
                    "image": img.permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0,
                    "alpha": to_torch(alpha, j, self.device).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0,
                    "trimap": to_torch(trimap, j, self.device).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
                    / 255.0,
                    "key": key,
                    "size": (int(h), int(w)),
                }
