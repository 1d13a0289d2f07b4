"""PyTorch-facing training loader: runs the geometry graph, the torch trimap/crop step and the finish graph.

See `train_graph.py` for which step runs where. Batches are dicts of tensors on the loader's device:
image/fg/bg N x 3 x crop x crop float32 in [0, 1], alpha/trimap N x 1 x crop x crop (trimap 0, 128/255 or 1).
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .crop_pool import CropPool
from .crop_step import CropBatch, crop_batch, single_torch_thread
from .dataset import Dataset, DatasetError
from .decoding import decodes
from .options import AugmentOptions
from .sampling import BatchPlan, CorruptMemberError, MemberNames, Sampler
from .train_graph import BG_REGION_INPUTS, COMBINE_INPUTS, FINISH_INPUTS, JITTER_INPUTS, finish_graph, geometry_graph

log = logging.getLogger(__name__)

_CPU = torch.device("cpu")


def default_threads() -> int:
    """min(available cores, 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def resolve_device(device: str, rank: int) -> tuple[torch.device, int | None]:
    """torch device and DALI device_id (None = CPU-only DALI) for `device` = "cpu" | "cuda" | "cuda:N".

    `rank` is the global rank, so it is not used to pick the GPU: the local device is."""
    if device == "cpu":
        return torch.device("cpu"), None
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but CUDA is not available; use device='cpu'")
        # "cuda" = the current device (Ray Train / torchrun set it per local rank); "cuda:N" picks one explicitly
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        return torch.device("cuda", index), index
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


@functools.cache
def _handover_stream(index: int) -> torch.cuda.Stream:
    return torch.cuda.Stream(torch.device("cuda", index))


def copied_out(read: Callable[[], torch.Tensor], device: torch.device) -> torch.Tensor:
    """`read()` (which reads DALI output buffers in place and returns new memory) made safe to outlive them.

    On a GPU, DALI frees its output buffers in the order of its own CUDA stream as soon as the Python objects go,
    and its next run may take the same memory back at once: a copy queued on the consumer's stream, behind a
    training step that has not run yet, would then read another batch's pixels. So the copy runs on a hand-over
    stream of its own (`torch.from_dlpack` makes that stream wait for DALI's data), which is waited for here, and
    the result is marked as used by the device's default stream, where its consumers run. CUDA devices only: a CPU
    read is done when it returns."""
    stream = _handover_stream(device.index if device.index is not None else torch.cuda.current_device())
    with torch.cuda.stream(stream):
        out = read()
    stream.synchronize()
    out.record_stream(torch.cuda.default_stream(out.device))
    return out


def _init_helper_thread(device: torch.device) -> None:
    """A loader's helper thread's torch state: one CPU thread (as `single_torch_thread`, for the same reason), or the
    loader's GPU as its current device (the current device is per thread, and a new thread starts on GPU 0)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)


def to_torch(tensor_list, i: int, device: torch.device) -> torch.Tensor:
    """Sample i of a DALI TensorList as a torch tensor (a copy) on `device`."""
    t = tensor_list[i]
    if device.type == "cuda":
        return copied_out(lambda: torch.from_dlpack(t).clone(), device)
    return torch.from_numpy(np.array(t))


def unit_nchw(tensor_list, device: torch.device) -> torch.Tensor:
    """A uniform N x H x W x C DALI TensorList on the 0..255 scale as a new N x C x H x W float32 tensor in [0, 1] on
    `device`, in one pass that reads DALI's buffer in place (`copied_out`: finished before this returns)."""
    if device.type == "cuda":
        return copied_out(lambda: _unit_nchw(torch.from_dlpack(tensor_list.as_tensor()), device), device)
    return _unit_nchw(torch.from_numpy(np.asarray(tensor_list.as_tensor())), device)


def _unit_nchw(src: torch.Tensor, device: torch.device) -> torch.Tensor:
    n, h, w, c = src.shape
    out = torch.empty((n, c, h, w), dtype=torch.float32, device=device)
    if src.dtype == torch.float32:
        return torch.mul(src.permute(0, 3, 1, 2), 1.0 / 255.0, out=out)
    out.copy_(src.permute(0, 3, 1, 2))  # uint8: converting first, then scaling in place, is the faster order
    return out.mul_(1.0 / 255.0)


def find_corrupt(plan: BatchPlan, encoding: str = "png") -> list[tuple[str, str, str]]:
    """(shard, key, member) of every member of the plan that does not decode on the host (OpenCV for PNG/JPEG,
    the `.npy` checks for raw); used to name the member a DALI failure came from."""
    bad = []
    names = MemberNames.of(encoding)
    for src, (f1, f2, bgb), geo_a1, geo_a2, comb in zip(plan.sources, plan.fg_bytes, plan.geometry[0],
                                                       plan.geometry[1], plan.combine):
        checks = [(src[0], "alpha", geo_a1), (src[0], "fg", f1), (src[1], "bg", bgb)]
        if len(src) > 2 and src[2][2] == "trimap":
            checks.append((src[2], "trimap", geo_a2))
            if len(src) > 3:  # a photo sample's stored image (second-fg slot)
                checks.append((src[3], "image", f2))
        elif comb:
            checks += [(src[2], "alpha", geo_a2), (src[2], "fg", f2)]
        for (shard, key, _), base, data in checks:
            if not decodes(data, encoding):
                bad.append((str(shard.path), key, names.present(shard, key, base)))
    return bad


class _DaliRunError(RuntimeError):
    """A failure inside a DALI graph run (as opposed to a bug in the loader's own code)."""


def frame_views(tensor_list) -> list[torch.Tensor]:
    """The H x W x 1 uint8 samples of a CPU DALI TensorList as H x W torch views of DALI's buffer (no copy: valid
    until the graph runs again)."""
    return [torch.from_numpy(np.asarray(tensor_list[i]))[..., 0] for i in range(len(tensor_list))]


def describe_stage_times(times: dict[str, float], batches: int) -> str:
    """One log line of `TrainLoader.stage_times()` over `batches` batches, in ms per batch."""
    if batches < 1 or not times:
        return "no batches timed"
    ms = {k: 1000.0 * v / batches for k, v in times.items()}
    main = ", ".join(f"{k} {v:.1f}" for k, v in ms.items() if k != "finish")
    return (f"main thread {sum(v for k, v in ms.items() if k != 'finish'):.1f} ms/batch ({main}); finish graph "
            f"{ms.get('finish', 0.0):.1f} ms/batch on the helper thread")


def _drain(pending: collections.deque) -> None:
    """Wait for finish-graph runs still in flight (their results are dropped)."""
    while pending:
        _, future = pending.popleft()
        try:
            future.result()
        except Exception:  # noqa: BLE001 - dropped batches; the caller handles the first failure
            pass


class TrainLoader:
    """Fixed-length epochs of augmented, composited training crops; see `build_train_loader`."""

    def __init__(self, dataset_dir: str | os.PathLike, batch_size: int, crop_size: int, *, rank: int = 0,
                 world_size: int = 1, device: str = "cpu", seed: int = 0, iterations_per_epoch: int | None = None,
                 num_threads: int | None = None, composites: bool = False, photos: bool = False,
                 crop_workers: int = 0, **augment_options: object) -> None:
        if batch_size < 1 or crop_size < 8:
            raise ValueError(f"batch_size must be >= 1 and crop_size >= 8, got {batch_size}, {crop_size}")
        if crop_workers < 0:
            raise ValueError(f"crop_workers must be >= 0 (0: the crop step runs in the loader's thread), got "
                             f"{crop_workers}")
        self.options = AugmentOptions.from_kwargs(**augment_options)
        self.dataset = Dataset(dataset_dir)
        remedy = f"run `python -m data_prep synthetic --out {self.dataset.dir}` (or data_prep folders/composition1k)"
        if composites and photos:
            raise ValueError("composites and photos are two sources: mix them with build_train_loader(photo_ratio=...)")
        self.photos = photos
        self.composites = composites = composites or photos  # photos: own bg and trimap, like train composites
        if photos:
            self.dataset.require("photo", remedy=f"prepare an image + alpha dataset with `--photos` (python -m "
                                 f"data_prep am2k|p3m10k|ppm100|aim500|rwp636 ... --photos --out {self.dataset.dir})")
            fg, bg = self.dataset.samples("photo"), []
        elif composites:
            self.dataset.require("train", remedy=f"run `python -m data_prep synthetic --out {self.dataset.dir} "
                                 "--train-composites K` (or pass composites=False to composite fg/bg shards)")
            fg, bg = self.dataset.samples("train"), []
        else:
            self.dataset.require("fg", "bg", remedy=remedy)
            fg, bg = self.dataset.samples("fg"), self.dataset.samples("bg")
        if not fg or (not bg and not composites):
            raise DatasetError(f"{self.dataset.dir}: the shards hold no samples; " + remedy)
        self.device, self.device_id = resolve_device(device, rank)
        self.batch_size, self.crop = batch_size, crop_size
        self.num_threads = num_threads or default_threads()
        iters = iterations_per_epoch or Sampler.default_iterations(len(fg), batch_size, world_size)
        self.encoding = self.dataset.encoding
        self.sampler = Sampler(fg, bg, batch_size=batch_size, crop=crop_size, rank=rank, world_size=world_size,
                               seed=seed, iterations=iters, options=self.options, composites=composites,
                               encoding=self.encoding, stored_image=photos)
        self.iterations = iters
        self.epoch = 0
        self.start_batch = 0                  # first batch of the epoch the next pass yields (set_epoch)
        self.skipped = 0                      # corrupt samples skipped (skip_corrupt=True)
        self.last_keys: list[str] = []        # foreground keys of the batch yielded last
        self._dev_kind = "cuda" if self.device.type == "cuda" else "cpu"
        self._geometry = None
        self._next_feed = 0                   # global iteration the geometry source yields next
        self._next_out = 0                    # global iteration whose outputs come next
        self._inflight: dict[int, BatchPlan] = {}
        self._source_error: CorruptMemberError | None = None  # a member the sampler could not read (see _source)
        self._combine_enabled = self.options.p_combine > 0 and not composites
        self._jitter_enabled = bool(self.options.hsv_jitter) and not photos  # a jittered fg would not match the photo
        self._finish = finish_graph(batch_size, self.num_threads, self.device_id, self._dev_kind, crop_size,
                                    composites, self._combine_enabled, self._jitter_enabled, self.encoding,
                                    stored_image=photos)
        self._finish.build()
        # torch's thread count is per thread (OpenMP): the helper's conversions run on one thread too, for the same
        # reason as `single_torch_thread` (idle OpenMP workers spin and burn the cores DALI needs)
        # (the initializer is given the device, not the loader: a bound method would keep the loader alive for as
        # long as its helper thread runs, i.e. forever, with its DALI graphs, streams and crop workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="dali-finish", initializer=_init_helper_thread, initargs=(self.device,))
        # the geometry graph and the crop step run on the CPU on every loader, so choosing the crop (a data-dependent
        # draw) never syncs host and device; on the GPU their crop-sized results go up on a copy stream of their own
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        # the crop step in worker processes (crop_pool.py), up to one batch per worker in flight; 0: in this thread
        self._crop_pool = CropPool(crop_workers) if crop_workers else None
        self._stage_seconds: collections.Counter[str] = collections.Counter()  # see `stage_times`

    def stage_times(self, reset: bool = False) -> dict[str, float]:
        """Seconds spent in each stage since the loader was built or last reset: on the loader's main thread,
        `geometry` (waiting for the geometry graph, the batch plans included), `crop` (the crop step, or with crop
        workers copying the frames out and queueing it), `crop_wait` (waiting for a crop worker), `feeds` (the finish
        graph's inputs), `upload` (to the GPU), `finish_wait` (waiting for the finish graph); on the helper thread,
        `finish` (the finish graph's run and conversion). The main thread's sum is the loader's serial cost: the
        figure to compare with the training step (`describe_stage_times`)."""
        times = dict(self._stage_seconds)
        if reset:
            self._stage_seconds.clear()
        return times

    def _timed(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self._stage_seconds[stage] += now - start
        return now

    def close(self) -> None:
        """Stop the crop worker processes (if any); later passes run the crop step in the loader's thread."""
        if self._crop_pool is not None:
            self._crop_pool.close()
            self._crop_pool = None

    def __del__(self) -> None:
        if getattr(self, "_crop_pool", None) is not None:
            self.close()

    def __len__(self) -> int:
        return self.iterations

    def _to_device(self, feeds: dict[str, list], trimaps: list[torch.Tensor]
                   ) -> tuple[dict[str, list], list[torch.Tensor]]:
        """The crop step's CPU tensors on the loader's GPU (a no-op on the CPU): one pinned, asynchronous copy per
        input name on the loader's copy stream, which is then waited for (the copies only: the training step queued on
        the main stream is not waited for), and each tensor marked as used on the helper thread's stream, so the
        allocator does not reuse its memory early."""
        if self._copy_stream is None:
            return feeds, trimaps
        dev = self.device

        def upload(values: list) -> list:
            if not values or not isinstance(values[0], torch.Tensor):
                return values
            if all(v.shape == values[0].shape for v in values):  # one copy for the batch, handed out as views
                return list(torch.stack(values).pin_memory().to(dev, non_blocking=True).unbind(0))
            return [v.pin_memory().to(dev, non_blocking=True) for v in values]

        with torch.cuda.stream(self._copy_stream):
            feeds = {name: upload(values) for name, values in feeds.items()}
            trimaps = upload(trimaps)
        self._copy_stream.synchronize()
        consumer = torch.cuda.default_stream(dev)
        for t in [*trimaps, *(v for values in feeds.values() for v in values)]:
            if isinstance(t, torch.Tensor) and t.is_cuda:
                t.record_stream(consumer)
        return feeds, trimaps

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch the next pass yields, from batch `start_batch` on (that pass yields len(self) -
        start_batch batches). Batch i of epoch e is a pure function of (seed, rank, world size, e, i), so a
        mid-epoch resume gets exactly the batches a full pass would give from there, without decoding the skipped
        ones. (One exception: with skip_corrupt, corrupt samples met only in the skipped batches are not known yet,
        so later draws that would have avoided them can differ.)"""
        if not 0 <= start_batch <= self.iterations:
            raise ValueError(f"start_batch must be in [0, {self.iterations}], got {start_batch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    # -- geometry graph ---------------------------------------------------------------------------------------------
    def _source(self):
        try:
            plan = self.sampler.plan(self._next_feed)
        except CorruptMemberError as exc:  # DALI re-raises it from run(); `_prepare` names the member
            self._source_error = exc
            raise
        self._inflight[self._next_feed] = plan
        self._next_feed += 1
        return tuple(plan.geometry)

    def _start_geometry(self, iteration: int) -> None:
        self._geometry = None
        self._inflight.clear()
        self._next_feed = self._next_out = iteration
        self._geometry = geometry_graph(self.batch_size, self.num_threads, self._source, self.composites,
                                        self.encoding)
        self._geometry.build()

    def _fail(self, exc: Exception, plans: list[BatchPlan]) -> None:
        """Turn a DALI failure into a DatasetError naming the member, or mark it skipped; re-raises otherwise."""
        planned, self._source_error = self._source_error, None
        bad = [(planned.shard, planned.key, planned.member)] if planned is not None else []
        bad += [b for p in plans for b in find_corrupt(p, self.encoding)]
        if not bad:
            raise DatasetError(f"DALI failed on a batch of {self.dataset.dir} (keys "
                               f"{[k for p in plans for k in p.keys]}): {exc}") from exc
        if not self.options.skip_corrupt:
            shard, key, member = bad[0]
            raise DatasetError(f"{shard}: sample {key!r} has a corrupt {member} member that cannot be decoded "
                               f"({len(bad)} bad member(s) in this batch); rerun data_prep, or skip and count such samples "
                               "(training config: data.augment.skip_corrupt=true; loader: skip_corrupt=True)") from exc
        for shard, key, member in bad:
            if (shard, key) not in self.sampler.bad:
                log.warning("skipping corrupt sample %s in %s (%s member)", key, shard, member)
                self.sampler.bad.add((shard, key))
                self.skipped += 1
        self.sampler._slots.clear()

    # -- iteration ---------------------------------------------------------------------------------------------------
    def _stage(self, g: int) -> tuple[BatchPlan, concurrent.futures.Future] | None:
        """Geometry outputs of global iteration g -> its crop step (a future: done already when the step runs in this
        thread, queued when it runs in a crop worker); None after a handled DALI failure."""
        t = time.perf_counter()
        try:
            a1, a2 = self._geometry.run()
        except Exception as exc:  # noqa: BLE001 - DALI raises RuntimeError subclasses
            plans = [self._inflight[k] for k in sorted(self._inflight)]
            self._geometry = None
            self._fail(exc, plans)
            self._start_geometry(g)
            return None
        t = self._timed("geometry", t)
        plan = self._inflight.pop(g)
        self._next_out = g + 1
        args = self.crop_args(plan, frame_views(a1), frame_views(a2))
        if self._crop_pool is not None:
            future = self._crop_pool.submit(*args)
        else:
            future = concurrent.futures.Future()
            with single_torch_thread(_CPU):
                future.set_result(crop_batch(*args))
        self._timed("crop", t)
        return plan, future

    def crop_args(self, plan: BatchPlan, frames1: list[torch.Tensor], frames2: list[torch.Tensor]) -> tuple:
        """The arguments of `crop_step.crop_batch` (or `CropPool.submit`) for one batch's geometry-graph frames."""
        return (frames1, frames2, plan.combine, plan.erosion, self.crop, self.options.min_unknown, plan.crop_seed,
                self.composites)

    def _crop_result(self, future: concurrent.futures.Future) -> CropBatch:
        t = time.perf_counter()
        pool = getattr(future, "crop_pool", None)   # the pool that queued it (this loader's may be closed since)
        result = pool.result(future) if pool is not None else future.result()
        self._timed("crop_wait", t)
        return result

    def _drain_crops(self, cropping: collections.deque) -> None:
        """Wait for crop steps still in flight and hand their slots back (their results are dropped)."""
        while cropping:
            _, future = cropping.popleft()
            try:
                result = self._crop_result(future)
            except Exception:  # noqa: BLE001 - dropped batches; the caller handles the first failure
                continue
            if result.release is not None:
                result.release()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Exactly len(self) - start_batch batches (see set_epoch). The finish graph of batch i runs in a helper
        thread (DALI releases the GIL) while this thread runs the geometry graph and the crop step of the next
        batches; with crop workers, up to one crop step per worker is in flight."""
        start = self.epoch * self.iterations + self.start_batch
        count = self.iterations - self.start_batch
        if self._geometry is None or self._next_out != start:
            self._start_geometry(start)
        cropping: collections.deque = collections.deque()    # (plan, future of its CropBatch)
        finishing: collections.deque = collections.deque()   # (plan, future of its batch)
        depth = self._crop_pool.workers if self._crop_pool is not None else 1
        done, nxt = 0, 0
        try:
            while done < count:
                while len(finishing) < 2 and (cropping or nxt < count):
                    while nxt < count and len(cropping) < depth:  # keep `depth` crop steps queued
                        staged = self._stage(start + nxt)
                        if staged is not None:
                            cropping.append(staged)
                            nxt += 1
                    plan, crop_future = cropping.popleft()
                    cropped = self._crop_result(crop_future)
                    feeds, trimaps = self._feeds(plan, cropped)
                    t = time.perf_counter()
                    feeds, trimaps = self._to_device(feeds, trimaps)
                    self._timed("upload", t)
                    finishing.append((plan, self._pool.submit(self._run_finish, feeds, trimaps, cropped.release)))
                plan, future = finishing.popleft()
                t = time.perf_counter()
                try:
                    batch = future.result()
                except _DaliRunError as exc:
                    _drain(finishing)
                    self._drain_crops(cropping)
                    self._geometry = None
                    self._fail(exc, [plan])
                    self._start_geometry(plan.iteration)
                    nxt = plan.iteration - start
                    continue
                self._timed("finish_wait", t)
                self.last_keys = list(plan.keys)
                done += 1
                yield batch
        finally:
            _drain(finishing)
            self._drain_crops(cropping)

    def _feeds(self, plan: BatchPlan, cropped: CropBatch) -> tuple[dict[str, list], list[torch.Tensor]]:
        """The finish graph's inputs for one batch from its crop step's results (numpy and torch, on the CPU)."""
        t = time.perf_counter()
        crop = self.crop
        feeds: dict[str, list] = {n: [] for n in FINISH_INPUTS}
        no_weight = torch.zeros((1, 1, 1), dtype=torch.float32)   # for samples without a second fg
        # the float alpha is both a composite weight of the finish graph and the batch's "alpha" output
        alpha_f = (cropped.alphas.to(torch.float32) * (1.0 / 255.0)).unsqueeze(-1)
        alpha_inv = 1.0 - alpha_f
        combined = 0
        for j, win in enumerate(cropped.windows):
            combine = plan.combine[j]
            # crop pixel centre u (continuous) -> frame point -> source point of each foreground
            to_frame = np.array([[win.scale_x, 0, win.left], [0, win.scale_y, win.top], [0, 0, 1.0]])
            inv1, inv2 = plan.frame_inv[j]
            by, bx = plan.bg_scale[j]
            f1, f2, bgb = plan.fg_bytes[j]
            ext = win.scale_y * crop, win.scale_x * crop
            hue, su, vu = plan.colour[j]
            feeds["fg1"].append(f1)
            feeds["fg2"].append(f2)
            feeds["bg"].append(bgb)
            feeds["matrix1"].append((inv1 @ to_frame)[:2].astype(np.float32))
            feeds["matrix2"].append((inv2 @ to_frame)[:2].astype(np.float32))
            hb, wb = plan.bg_sizes[j]
            roi0 = np.array([win.top * by, win.left * bx])
            roi1 = np.array([(win.top + ext[0]) * by, (win.left + ext[1]) * bx])
            resample = not (win.is_window and by == 1.0 and bx == 1.0)
            if resample:  # decode with a margin for the cubic filter; the ROI resize upscales and crops
                lo = np.clip(np.floor(roi0) - 3, 0, [hb - 1, wb - 1]).astype(np.int32)
                hi = np.clip(np.ceil(roi1) + 3, lo + 1, [hb, wb]).astype(np.int32)
            else:  # same scale: decode exactly the crop window (the spec resizes the background only when needed)
                lo = np.array([win.top, win.left], np.int32)
                hi = lo + crop
            feeds["bg_slice_start"].append(lo)
            feeds["bg_slice_shape"].append(hi - lo)
            feeds["bg_resample"].append(np.bool_(resample))
            feeds["bg_roi_start"].append((roi0 - lo).astype(np.float32))
            feeds["bg_roi_end"].append((roi1 - lo).astype(np.float32))
            feeds["alpha"].append(alpha_f[j])
            feeds["alpha_inv"].append(alpha_inv[j])
            if combine:
                feeds["weight1"].append(cropped.weights[combined, 0].unsqueeze(-1))
                feeds["weight2"].append(cropped.weights[combined, 1].unsqueeze(-1))
                combined += 1
            else:
                feeds["weight1"].append(no_weight)
                feeds["weight2"].append(no_weight)
            feeds["combine"].append(np.bool_(combine))
            feeds["hue"].append(np.float32(hue))
            feeds["sat_u"].append(np.float32(su))
            feeds["val_u"].append(np.float32(vu))
            feeds["jitter"].append(np.float32(self.options.hsv_jitter))
        self._timed("feeds", t)
        return feeds, list(cropped.trimaps)

    def _run_finish(self, feeds: dict[str, list], trimaps: list[torch.Tensor],
                    release: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
        """Feed and run the finish graph (in the helper thread); the batch dict on the loader's device, none of it
        a view of the inputs. `release`: called when the inputs are no longer read (a crop worker's slot)."""
        try:
            return self._finish_batch(feeds, trimaps)
        finally:
            if release is not None:
                release()

    def _finish_batch(self, feeds: dict[str, list], trimaps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        t = time.perf_counter()
        dev = self.device
        for name, data in feeds.items():
            if self.composites and name in BG_REGION_INPUTS:
                continue  # not in the composites graph
            if not self._combine_enabled and name in COMBINE_INPUTS and not (self.photos and name == "fg2"):
                continue  # combination left out of the graph (a photo sample's image rides in fg2)
            if self.photos and name in ("alpha", "alpha_inv"):
                continue  # no composite is made of a photo sample
            if not self._jitter_enabled and name in JITTER_INPUTS:
                continue
            if dev.type == "cpu" and data and isinstance(data[0], torch.Tensor):
                data = [d.numpy() for d in data]
                self._finish.feed_input(name, data)  # read in place (no_copy); `feeds` outlives the run below
            elif data and isinstance(data[0], torch.Tensor):
                # DALI copies device inputs on the given stream; left to itself it would take this thread's current
                # (the default) stream and queue the copy behind the training step
                self._finish.feed_input(name, data, cuda_stream=self._copy_stream)
            else:
                self._finish.feed_input(name, data)
        try:
            image, fg, bg = self._finish.run()
        except Exception as exc:  # noqa: BLE001 - DALI raises RuntimeError subclasses
            raise _DaliRunError(str(exc)) from exc
        alpha = torch.stack(feeds["alpha"])
        trimap = torch.stack(trimaps).unsqueeze(1).to(torch.float32) / 255.0
        batch = {"image": unit_nchw(image, dev), "fg": unit_nchw(fg, dev), "bg": unit_nchw(bg, dev),
                 "alpha": alpha[..., 0].unsqueeze(1), "trimap": trimap}
        self._timed("finish", t)
        return batch
