"""jobs.config: YAML + dotted overrides, strict keys and types, the shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import TrainConfig, config_from_dict, flatten, load_config
from jobs.errors import JobError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "jobs" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path: Path) -> None:
    cfg = load_config(path)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_a2u_recipe_values() -> None:
    cfg = load_config(Path("jobs/configs/a2u_comp1k.yaml"))
    assert (cfg.data.crop_size, cfg.data.batch_size, cfg.optim.lr, cfg.optim.backbone_lr_ratio) == (512, 8, 0.01, 0.01)
    assert cfg.optim.milestones == [20, 26] and cfg.optim.gamma == 0.1 and cfg.optim.weight_decay == 0.0


def test_overrides_are_typed_and_dotted() -> None:
    cfg = load_config(None, ["optim.lr=3e-4", "data.iterations_per_epoch=null", "optim.milestones=[2, 4]",
                             "model.options.upsampler=bilinear", "perf.channels_last=true", "optim.epochs=7"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.data.iterations_per_epoch is None
    assert cfg.optim.milestones == [2, 4] and cfg.model.options == {"upsampler": "bilinear"}
    assert cfg.perf.channels_last is True and cfg.optim.epochs == 7
    assert flatten(cfg.to_dict())["model.options.upsampler"] == "bilinear"


def test_int_accepted_for_float_field() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize("override, fragment", [
    ("optim.lrr=0.1", "valid keys: optim.lr, optim.backbone_lr_ratio"),
    ("optimizer.lr=0.1", "valid sections: run, data, model"),
    ("data.crop_size=big", "data.crop_size must be int"),
    ("data.crop_size=100", "multiple of 16"),
    ("perf.amp_dtype=fp8", "must be one of"),
    ("perf.compile_mode=fastest", "must be one of"),
    ("perf.ops_backend=cuda", "must be one of"),
    ("scaling.use_gpu=3", "must be bool"),
    ("noequals", "section.key=value"),
])
def test_bad_overrides_name_the_problem(override: str, fragment: str) -> None:
    with pytest.raises(JobError, match=None) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_unknown_key_in_yaml_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(JobError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "optim.lr" in str(info.value)


def test_a_key_written_twice_in_yaml_is_refused(tmp_path: Path) -> None:
    """PyYAML alone keeps the last of two equal keys; a stale second section must not override silently."""
    bad = tmp_path / "twice.yaml"
    bad.write_text("run: an old note\noptim:\n  lr: 0.1\nrun:\n  seed: 3\n")
    with pytest.raises(JobError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "'run' twice" in str(info.value) and "line 4" in str(info.value)
    nested = tmp_path / "nested.yaml"
    nested.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(JobError, match="'lr' twice"):
        load_config(nested)


def test_missing_config_file() -> None:
    with pytest.raises(JobError, match="does not exist"):
        load_config("jobs/configs/nope.yaml")


def test_ops_backend_switches_model_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """perf.ops_backend reaches model.ops' one switch in the worker, without touching the environment; null leaves
    the environment's choice."""
    import os

    import torch

    from jobs.train_loop import apply_ops_backend
    from model import fused_ops

    monkeypatch.setattr(fused_ops._BACKEND, "chosen", None)  # restored after the test
    monkeypatch.setenv(fused_ops.BACKEND_ENV, "reference")
    x = torch.zeros(1, 1, 2, 2)
    apply_ops_backend(load_config(None, ["perf.ops_backend=null"]))
    assert fused_ops.select_backend(x) == "reference"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    apply_ops_backend(load_config(None, ["perf.ops_backend=fused"]))
    with pytest.raises(RuntimeError, match="'fused' on a cpu tensor"):
        fused_ops.select_backend(x)     # fused asked for on a CPU tensor without the interpreter: refused
    assert os.environ[fused_ops.BACKEND_ENV] == "reference"
    apply_ops_backend(load_config(None, ["perf.ops_backend=auto"]))
    assert fused_ops.select_backend(x) == "reference"   # auto on CPU
    with fused_ops.ops_backend("reference"):
        assert fused_ops.current_backend() == "reference"
    assert fused_ops.current_backend() == "auto"


def test_cudnn_benchmark_is_on_for_cuda_training_and_off_in_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """perf.cudnn_benchmark (default on) turns cuDNN's per-shape algorithm timing on in a CUDA worker only, and the
    validation pass (images of many sizes) runs with it off, restoring it after."""
    import torch

    from jobs.train_loop import apply_cudnn_benchmark, cudnn_benchmark_off

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored after the test
    cfg = load_config(None)
    assert cfg.perf.cudnn_benchmark is True
    apply_cudnn_benchmark(cfg, torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    apply_cudnn_benchmark(cfg, torch.device("cuda", 0))  # only a flag: no GPU needed
    assert torch.backends.cudnn.benchmark is True

    @cudnn_benchmark_off()
    def validate() -> bool:
        return torch.backends.cudnn.benchmark

    assert validate() is False and validate() is False
    assert torch.backends.cudnn.benchmark is True
    apply_cudnn_benchmark(load_config(None, ["perf.cudnn_benchmark=false"]), torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("scaling,resources,match", [
    ({"num_workers": 2, "use_gpu": True}, {"CPU": 16, "GPU": 1}, r"needs 2 GPU\(s\).*has 1: set scaling.num_workers=1"),
    ({"num_workers": 1, "use_gpu": True}, {"CPU": 16}, r"has 0: set scaling.use_gpu=false"),
    ({"num_workers": 2, "cpus_per_worker": 4}, {"CPU": 2}, r"needs 8 CPUs, but the Ray cluster has 2"),
])
def test_a_worker_group_the_cluster_cannot_place_is_refused(scaling, resources, match) -> None:
    from jobs.trainer import check_cluster_fits

    cfg = TrainConfig()
    for key, value in scaling.items():
        setattr(cfg.scaling, key, value)
    with pytest.raises(JobError, match=match):
        check_cluster_fits(cfg, resources)
    check_cluster_fits(cfg, {"CPU": 64, "GPU": 8})  # enough of both


def test_each_worker_must_fit_on_one_node() -> None:
    # the totals fit (12 CPUs, 2 GPUs), but the GPU node has 4 CPUs: one 4-CPU GPU worker fits, not two; Ray would
    # retry the group without end
    from jobs.trainer import check_cluster_fits

    cfg = TrainConfig()
    cfg.scaling.num_workers, cfg.scaling.use_gpu, cfg.scaling.cpus_per_worker = 2, True, 4
    head, gpu_node = {"CPU": 8}, {"CPU": 4, "GPU": 2}
    check_cluster_fits(cfg, {"CPU": 12, "GPU": 2})  # the totals alone pass
    with pytest.raises(JobError, match=r"hold only 1 of them.*one node"):
        check_cluster_fits(cfg, {"CPU": 12, "GPU": 2}, [head, gpu_node])
    cfg.scaling.cpus_per_worker = 2
    check_cluster_fits(cfg, {"CPU": 12, "GPU": 2}, [head, gpu_node])
    cfg.scaling.use_gpu = False
    cfg.scaling.num_workers, cfg.scaling.cpus_per_worker = 3, 4
    check_cluster_fits(cfg, {"CPU": 12}, [head, gpu_node])  # 2 on the head, 1 on the GPU node


@pytest.mark.parametrize("override,match", [
    ("data.augment.p_combne=0.1", r"unknown config key 'data.augment.p_combne'; valid keys: data.augment.p_combine"),
    ("data.augment.p_hflip=2", r"data.augment: .*p_hflip=2 is not a probability"),
    ("model.options.upsamplr=bilinear", r"unknown config key 'model.options.upsamplr'; valid keys: model.options.upsampler"),
    ("model.options.upsampler=bicubic", r"model.options: .*upsampler must be one of"),
    ("optim.lr=.nan", r"optim.lr must be a finite number > 0"),
    ("optim.lr=-0.01", r"optim.lr must be a finite number > 0"),
    ("optim.weight_decay=-1", r"optim.weight_decay must be a finite number >= 0"),
    ("optim.betas=[0.9, 1.5]", r"optim.betas must be two numbers"),
    ("data.photo_ratio=1.5", r"data.photo_ratio must be in \[0, 1\]"),
    ("data.photo_ratio=-0.1", r"data.photo_ratio must be in \[0, 1\]"),
    ("data.crop_workers=-1", r"data.crop_workers must be >= 0"),
])
def test_free_form_sections_and_numbers_are_checked_at_load_time(override: str, match: str) -> None:
    with pytest.raises(JobError, match=match):
        load_config(None, [override])


def test_valid_free_form_sections_load() -> None:
    cfg = load_config(None, ["data.augment.p_combine=0.2", "data.augment.scale_range=[0.9, 1.1]",
                             "model.options.upsampler=bilinear"])
    assert cfg.data.augment == {"p_combine": 0.2, "scale_range": [0.9, 1.1]}


def test_ray_train_report_chatter_is_debug_only(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import ray.train.v2._internal.execution.context as ray_context

    from jobs import ray_env

    # the logger Ray's report line really goes through (this module names it after its file)
    report_logger = ray_context.logger
    assert report_logger in ray_env.chatty_ray_loggers()
    for level, shown in (("INFO", False), ("DEBUG", True)):
        for logger in ray_env.chatty_ray_loggers():
            monkeypatch.setattr(logger, "level", logging.NOTSET)
        monkeypatch.setenv(ray_env.LOG_LEVEL_ENV, level)
        ray_env.quiet_ray_logs()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            report_logger.info("Reporting training result 1: TrainingReport(...)")
        assert ("Reporting training result" in caplog.text) == shown, level


def test_print_config_shows_the_resolved_configuration(capsys: pytest.CaptureFixture) -> None:
    import yaml

    from jobs.cli import main

    assert main(["train", "--config", "jobs/configs/a2u_comp1k.yaml", "optim.epochs=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["epochs"] == 3 and printed["model"]["pretrained"] == "torchvision"
    assert printed["tracking"]["log_every_n_steps"] >= 1  # defaults are part of it


def test_the_loaders_skip_hint_names_a_key_the_config_accepts() -> None:
    import re

    source = (Path(__file__).resolve().parents[2] / "pipeline" / "loader.py").read_text()
    [key] = re.findall(r"training config: ([\w.]+)=true", source)
    assert load_config(None, [f"{key}=true"]).data.augment == {"skip_corrupt": True}


def test_photo_ratio_needs_photo_shards_before_ray_starts(synthetic_dataset: Path) -> None:
    from jobs.trainer import check_dataset

    check_dataset(str(synthetic_dataset))
    with pytest.raises(JobError, match=r"no photo- shards but data.photo_ratio is 0.5; prepare .* --photos"):
        check_dataset(str(synthetic_dataset), 0.5)
