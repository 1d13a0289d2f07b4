"""The per-worker Ray Train loop: DDP A2U training on the pipeline loader, exact resume, checkpoint-gated MLflow
logging from rank 0, per-epoch validation on the `val` split, NaN/inf guard and an injectable worker failure."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from jobs.checkpointing import capture_rng_state, read_checkpoint, restore_rng_state, unwrap, write_checkpoint
from jobs.config import TrainConfig, config_from_dict
from jobs.images import grid_png
from jobs.training_state import autocast_dtype, backward_and_step, build_training_state

log = logging.getLogger("jobs.train_loop")

NONFINITE_KEY = "nonfinite_loss_step"
BUDGET_KEY = "stopped_by_time_budget"


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on GPU by default; off on CPU unless asked for (`training_state.autocast_dtype`)."""
    dtype = autocast_dtype(cfg, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _all_reduce(values: list[float], world: int) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if world > 1:
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
    return t.cpu().tolist()


def apply_ops_backend(cfg: TrainConfig) -> None:
    """Make `perf.ops_backend` the reassembly backend of this worker process; None leaves the default
    ($A2U_OPS_BACKEND, else auto)."""
    from model.fused_ops import set_ops_backend

    set_ops_backend(cfg.perf.ops_backend)


def apply_cudnn_benchmark(cfg: TrainConfig, device: torch.device) -> None:
    """`perf.cudnn_benchmark` for a CUDA worker (the fixed training crop makes cuDNN's per-shape timing pay off);
    off otherwise."""
    torch.backends.cudnn.benchmark = bool(cfg.perf.cudnn_benchmark) and device.type == "cuda"


@contextlib.contextmanager
def cudnn_benchmark_off():
    """Validation's whole images come in many sizes: timing cuDNN's algorithms for each would cost more than it
    saves, so it is off inside the block and restored after."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


class _IntervalStats:
    """Loss sum, finite/non-finite step counts and the first non-finite step, kept on the device between host
    syncs, so a training step never waits for the GPU; `reduce` is the one sync (two small all-reduces)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)   # loss sum, finite steps, bad steps
        self.first_bad = torch.full((), math.inf, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        value = loss.detach().to(torch.float64)
        finite = torch.isfinite(value)
        self.sums += torch.stack([torch.where(finite, value, 0.0), finite.to(torch.float64),
                                  (~finite).to(torch.float64)])
        this_step = torch.full_like(self.first_bad, step)
        self.first_bad = torch.minimum(self.first_bad, torch.where(finite, math.inf, this_step))

    def reduce(self, over_budget: float, world: int) -> tuple[float, float, int | None]:
        """(mean finite loss over ranks and steps, budget flag summed over ranks, first bad step or None); resets."""
        sums = torch.cat([self.sums, self.sums.new_tensor([over_budget])])
        first_bad = self.first_bad.reshape(1).clone()
        if world > 1:
            if dist.get_backend() == "nccl" and sums.device.type != "cuda":
                sums, first_bad = sums.cuda(), first_bad.cuda()
            dist.all_reduce(sums)
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
        loss_sum, ok, bad, over = sums.cpu().tolist()
        first = first_bad.item()
        self.sums.zero_()
        self.first_bad.fill_(math.inf)
        return loss_sum / max(ok, 1.0), over, (int(first) if bad else None)


class _IntervalTimer:
    """Wall time and data-wait time of the steps since the last host sync."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.t_prev = self.t_sync = time.perf_counter()
        self.waited, self.steps = 0.0, 0

    def got_batch(self) -> None:
        self.waited += time.perf_counter() - self.t_prev

    def next_batch(self) -> None:
        self.t_prev = time.perf_counter()


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class _Trainer:
    """State of one worker; methods are the phases of the loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        import ray
        import ray.train
        import ray.train.torch

        from model.losses import matting_loss
        from model.net import A2UMatting, convert_sync_batchnorm

        self.cfg = config_from_dict(config["cfg"])
        self.run_id: str = config["mlflow_run_id"]
        self.tracking_uri: str = config["tracking_uri"]
        self.run_dir: str | None = config.get("run_dir")
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device() if self.cfg.scaling.use_gpu else torch.device("cpu")
        self.loss_fn = matting_loss
        cfg = self.cfg

        apply_ops_backend(cfg)
        apply_cudnn_benchmark(cfg, self.device)
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        net = A2UMatting(**cfg.model.options)
        if self.world > 1 and cfg.model.sync_batchnorm and self.device.type == "cuda":
            net = convert_sync_batchnorm(net)  # PyTorch's SyncBatchNorm is GPU-only
        saved = self._saved_state(config.get("resume_from"))
        if saved is None and cfg.model.pretrained.strip().lower() != "none":  # ImageNet encoder init
            from model.pretrained import load_pretrained_encoder

            load_pretrained_encoder(net, cfg.model.pretrained.strip())
        # weights -> device -> optimiser -> optimiser state: Adam's moments land beside their parameters
        state = build_training_state(net, cfg, self.device, saved)
        self.optimizer, self.scheduler, self.scaler = state.optimizer, state.scheduler, state.scaler
        self.step, self.epoch, self.batch_in_epoch = state.step, state.epoch, state.batch_in_epoch
        if saved is not None:
            self._restore_position(saved)
        else:  # distinct per-rank streams for anything random outside the data loader
            self._seed_rank_streams(cfg.run.seed * 1000 + self.rank + 1)
        self.net = ray.train.torch.prepare_model(
            state.net, parallel_strategy_kwargs={"find_unused_parameters": cfg.perf.find_unused_parameters})
        if cfg.perf.compile:
            self.net = torch.compile(self.net, mode=cfg.perf.compile_mode)
        self.worker_nodes = _gather(ray.get_runtime_context().get_node_id(), self.world)  # rank -> Ray node id
        self.logger = None
        if self.rank == 0:
            import json

            from jobs.tracking import StepLogger

            self.logger = StepLogger(self.tracking_uri, self.run_id,
                                     fallback_last_logged=int((saved or {}).get("mlflow_last_logged", 0)))
            self.logger.call("set_tag", self.run_id, "a2u.worker_nodes", json.dumps(self.worker_nodes))

    # ---------------------------------------------------------------- resume
    def _saved_state(self, resume_from: str | None) -> dict[str, Any] | None:
        """The state to resume from: Ray's latest checkpoint of this run, else `resume_from`, else None."""
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                saved = read_checkpoint(d)
            saved["_source"] = ckpt.path
            return saved
        if resume_from:
            saved = read_checkpoint(resume_from)
            saved["_source"] = resume_from
            return saved
        return None

    def _restore_position(self, saved: dict[str, Any]) -> None:
        """MLflow run and RNG streams of a restored checkpoint (weights and optimiser are already loaded)."""
        if saved.get("mlflow_run_id") and saved["mlflow_run_id"] != self.run_id:
            log.warning("checkpoint belongs to MLflow run %s; continuing that run", saved["mlflow_run_id"])
            self.run_id = saved["mlflow_run_id"]
        rng = saved.get("rng") or []
        if saved.get("world_size") == self.world and len(rng) == self.world:
            restore_rng_state(rng[self.rank])
        else:  # no saved stream for this rank (world size changed): new per-rank streams, unlike a fresh run's
            self._seed_rank_streams(int(np.random.SeedSequence([self.cfg.run.seed, self.rank, self.step])
                                        .generate_state(1)[0]))
            if self.batch_in_epoch:
                log.warning("world size changed (%s -> %s): resuming mid-epoch, the data order differs from the "
                            "uninterrupted run", saved.get("world_size"), self.world)
        if self.rank == 0:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", saved["_source"], self.step, self.epoch,
                     self.batch_in_epoch)

    @staticmethod
    def _seed_rank_streams(seed: int) -> None:
        """Seed the torch (CPU and every GPU) and NumPy global streams of this rank: dropout and anything random
        outside the data loader, whose draws are keyed separately."""
        torch.manual_seed(seed)
        np.random.seed(seed)

    # ---------------------------------------------------------------- checkpoints
    def _checkpoint(self, metrics: dict[str, float]) -> None:
        """Every rank reports; rank 0 writes the state, then publishes the metrics the checkpoint now covers."""
        import ray.train
        from ray.train import Checkpoint

        rng = _gather(capture_rng_state(), self.world)
        metrics = {**metrics, "step": self.step, "epoch": self.epoch}
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        tmp = tempfile.mkdtemp(prefix="a2u-ckpt-")
        try:
            write_checkpoint(tmp, {
                "model": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step,
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "rng": rng, "world_size": self.world,
                "worker_nodes": self.worker_nodes,
                "config": self.cfg.to_dict(), "mlflow_run_id": self.run_id,
                "mlflow_last_logged": self.logger.last_logged if self.logger is not None else 0})
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"checkpoint_step{self.step:08d}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # Block until the controller has registered the checkpoint: reports are queued in the worker and a crash
        # before the controller polls them would lose it. Only then may MLflow see these steps.
        ray.train.get_all_reported_checkpoints(timeout_s=600)
        assert self.logger is not None
        self.logger.flush(self.step)

    # ---------------------------------------------------------------- failure injection
    def _maybe_inject_failure(self) -> None:
        dbg = self.cfg.debug
        if dbg.fail_at_step is None or self.step != dbg.fail_at_step or self.rank != dbg.fail_rank:
            return
        marker = Path(self.run_dir or tempfile.gettempdir()) / f"injected_failure_step{self.step}"
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        log.error("debug.fail_at_step=%d: killing worker rank %d now", self.step, self.rank)
        os._exit(17)

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    @cudnn_benchmark_off()
    def _validate(self) -> dict[str, float]:
        """Official metrics on the `val` split, samples spread over ranks, sums all-reduced."""
        import pipeline
        from model.inference import predict_alpha
        from model.metrics import evaluate

        net = unwrap(self.net)
        was_training = net.training
        net.eval()
        sums = {"SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "Conn": 0.0}
        count = 0
        limit = None if self.cfg.val.max_samples is None else math.ceil(self.cfg.val.max_samples / self.world)
        loader = pipeline.build_eval_loader(self.cfg.data.dataset_dir, split="val", rank=self.rank,
                                            world_size=self.world, device="cpu", as_uint8=True)
        grid_path = None
        for sample in loader:
            if limit is not None and count >= limit:
                break  # val.max_samples reached: the rest of the split is not decoded (the loader is per call)
            image, trimap, alpha = sample["image"], sample["trimap"], sample["alpha"]
            pred = predict_alpha(net, image, trimap)
            for k, v in evaluate(pred, alpha, trimap).items():
                sums[k] += float(v)
            if count == 0 and self.rank == 0 and self.cfg.tracking.log_images:
                grid_path = grid_png(Path(tempfile.mkdtemp(prefix="a2u-grid-")) / f"epoch_{self.epoch:03d}.png",
                                     image, trimap, pred, alpha)
            count += 1
        net.train(was_training)
        totals = _all_reduce([*sums.values(), float(count)], self.world)
        n = totals[-1]
        if grid_path is not None and self.logger is not None:
            self.logger.call("log_artifact", self.run_id, str(grid_path), "val_grids")
            shutil.rmtree(grid_path.parent, ignore_errors=True)
        if n == 0:
            return {}
        return {f"val/{k}": totals[i] / n for i, k in enumerate(sums)} | {"val/samples": n}

    # ---------------------------------------------------------------- training
    def _build_loader(self):
        import pipeline

        d = self.cfg.data
        return pipeline.build_train_loader(
            d.dataset_dir, d.batch_size, d.crop_size, rank=self.rank, world_size=self.world,
            device=str(self.device) if self.device.type == "cuda" else "cpu", seed=self.cfg.run.seed,
            iterations_per_epoch=d.iterations_per_epoch, num_threads=d.num_threads or self.cfg.scaling.cpus_per_worker,
            crop_workers=d.crop_workers, composites=d.composites, photo_ratio=d.photo_ratio, **d.augment)

    def run(self) -> dict[str, int] | None:
        """Epochs until `optim.epochs`, a NaN/inf stop or the time budget; each epoch ends validated and
        checkpointed. Returns {NONFINITE_KEY: step} after a NaN/inf stop (Ray hands rank 0's return value to the
        driver, which must not register that run's model even when the MLflow tag could not be written)."""
        import pipeline

        cfg = self.cfg
        loader = self._build_loader()
        steps_per_epoch = len(loader)
        self._t_begin = time.time()
        self._stats = _IntervalStats(self.device)
        self._mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        if self.rank == 0:
            log.info("training: %d workers x batch %d, crop %d, %d steps/epoch, epochs %d..%d, step %d",
                     self.world, cfg.data.batch_size, cfg.data.crop_size, steps_per_epoch, self.epoch + 1,
                     cfg.optim.epochs, self.step)
        try:
            while self.epoch < cfg.optim.epochs:
                first_step = self.step
                outcome = self._train_epoch(loader, steps_per_epoch)
                if self.rank == 0:  # where the loader's time went: its main thread is serial, the step waits on it
                    log.info("epoch %d loader: %s", self.epoch + 1,
                             pipeline.describe_stage_times(loader.stage_times(reset=True), self.step - first_step))
                if outcome == "nonfinite":
                    return {NONFINITE_KEY: self._nonfinite_step}
                if outcome == "stopped":
                    return None
                self.scheduler.step()
                self.epoch += 1
                self.batch_in_epoch = 0
                over_budget = outcome == "over_budget" and self.epoch < cfg.optim.epochs  # not after the last
                self._validate_and_checkpoint(f"epoch {self.epoch} validation",
                                              {BUDGET_KEY: 1.0} if over_budget else {})
                if over_budget:
                    return None
        finally:
            loader.close()  # stops its crop worker processes, if any
        return None

    def _train_epoch(self, loader, steps_per_epoch: int) -> str:
        """The rest of the current epoch: "epoch" (done), "over_budget" (done, and the time budget is spent),
        "stopped" (budget spent mid-epoch: validated and checkpointed here) or "nonfinite" (NaN/inf stop)."""
        cfg = self.cfg
        every, log_every = cfg.checkpoint.every_n_steps, max(1, cfg.tracking.log_every_n_steps)
        loader.set_epoch(self.epoch, start_batch=self.batch_in_epoch)  # mid-epoch resume: the same stream
        self.net.train()
        batches = iter(loader)
        timer = _IntervalTimer()
        stop = 0.0
        for i in range(self.batch_in_epoch, steps_per_epoch):
            batch = next(batches)
            timer.got_batch()
            loss = self._loss(batch)
            self._stats.add(loss, self.step + 1)
            timer.steps += 1
            last = i + 1 == steps_per_epoch
            # the only host sync: every log_every_n_steps steps, at checkpoint steps and at the epoch's end, before
            # this step's update (with a sync every step a bad loss never reaches the weights; with longer
            # intervals the run still stops at the next sync and never checkpoints bad weights)
            sync = (self.step + 1) % log_every == 0 or bool(every and (self.step + 1) % every == 0) or last
            if sync:
                loss_mean, stop, bad_step = self._stats.reduce(self._over_budget(), self.world)
                if bad_step is not None:
                    self._stop_nonfinite(bad_step)
                    return "nonfinite"
            self._update(loss)
            self.step += 1
            self.batch_in_epoch = i + 1
            if sync:
                self._log_interval(loss_mean, timer, i + 1, steps_per_epoch)
            self._maybe_inject_failure()
            if not sync:
                timer.next_batch()
                continue
            if stop and not last:  # time budget spent: keep this step, finish cleanly
                if self.rank == 0:
                    log.warning("optim.max_train_minutes=%s reached at step %d (epoch %d, batch %d/%d): stopping "
                                "here", cfg.optim.max_train_minutes, self.step, self.epoch + 1, i + 1, steps_per_epoch)
                self._validate_and_checkpoint("final validation", {"train/loss": loss_mean, BUDGET_KEY: 1.0})
                return "stopped"
            if every and self.step % every == 0 and not last:
                self._checkpoint({"train/loss": loss_mean})
            timer.restart()  # the next interval starts after the checkpoint
        return "over_budget" if stop else "epoch"

    def _over_budget(self) -> float:
        budget = self.cfg.optim.max_train_minutes
        return float(self.rank == 0 and budget is not None and time.time() - self._t_begin > 60.0 * budget)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward pass (normalised RGB + trimap, autocast as configured) and the matting loss of one batch."""
        cfg = self.cfg
        image, alpha, trimap = batch["image"], batch["alpha"], batch["trimap"]
        x = torch.cat([(image - self._mean) / self._std, trimap], dim=1)
        if cfg.perf.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(cfg, self.device):
            pred = self.net(x)
        loss = self.loss_fn(pred.float(), alpha, trimap, batch["fg"], batch["bg"], image)
        if cfg.debug.nan_at_step is not None and self.step + 1 == cfg.debug.nan_at_step:
            loss = loss * float("nan")
        return loss

    def _update(self, loss: torch.Tensor) -> None:
        backward_and_step(loss, self.optimizer, self.scaler, self.cfg.optim.grad_clip_norm)

    def _log_interval(self, loss_mean: float, timer: "_IntervalTimer", batch: int, steps_per_epoch: int) -> None:
        """Rank 0: the interval's metrics into the step logger, and a progress line now and then."""
        if self.logger is None:
            return
        cfg = self.cfg
        log_every = max(1, cfg.tracking.log_every_n_steps)
        interval = max(time.perf_counter() - timer.t_sync, 1e-9)  # steps since the last sync, timed between syncs
        metrics = {"train/loss": loss_mean, "train/epoch": self.epoch + batch / steps_per_epoch,
                   "train/images_per_second": cfg.data.batch_size * self.world * timer.steps / interval,
                   "train/data_wait_fraction": min(1.0, timer.waited / interval)}
        for g, group in enumerate(self.optimizer.param_groups):
            metrics[f"train/lr_{group.get('name', g)}"] = group["lr"]
        self.logger.add(self.step, metrics)
        if self.step % max(1, 10 * log_every) == 0 or self.step <= 3:
            log.info("epoch %d step %d/%d loss %.4f %.2f img/s data-wait %.0f%%", self.epoch + 1, batch,
                     steps_per_epoch, metrics["train/loss"], metrics["train/images_per_second"],
                     100 * metrics["train/data_wait_fraction"])

    def _validate_and_checkpoint(self, label: str, extra: dict[str, float]) -> None:
        """Validation on the val split (when enabled and present), logged at this step, then a checkpoint."""
        val = self._validate() if self.cfg.val.enabled and self._has_val() else {}
        if self.logger is not None and val:
            self.logger.add(self.step, val)
            log.info("%s: %s", label, ", ".join(f"{k[4:]} {v:.4g}" for k, v in val.items()))
        self._checkpoint({**val, **extra})

    def _has_val(self) -> bool:
        from formats.manifest import read_manifest

        has = bool(read_manifest(self.cfg.data.dataset_dir).shards_of("val"))
        if not has and self.rank == 0 and self.epoch == 1:
            log.warning("%s has no val shards: per-epoch validation is skipped (write them with --val-count)",
                        self.cfg.data.dataset_dir)
        return has

    def _stop_nonfinite(self, bad_step: int) -> None:
        """Stop every rank without retrying (a NaN is deterministic); the last good checkpoint stays the latest."""
        import ray.train

        self._nonfinite_step = bad_step
        if self.rank == 0:
            log.error("non-finite loss at step %d (epoch %d): stopping; the last good checkpoint is kept",
                      bad_step, self.epoch + 1)
            assert self.logger is not None  # the driver reads run()'s return value, else this tag
            self.logger.call("set_tag", self.run_id, NONFINITE_KEY, str(bad_step))
        ray.train.report({NONFINITE_KEY: bad_step, "epoch": self.epoch}, checkpoint=None)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, int] | None:
    """Ray Train entry point (config = {"cfg", "mlflow_run_id", "tracking_uri", "run_dir", "resume_from"})."""
    from jobs.ray_env import LOG_LEVEL_ENV, quiet_ray_logs

    logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_ray_logs()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    return _Trainer(config).run()
