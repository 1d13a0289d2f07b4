"""Experiment configuration: typed sections, YAML files, `dotted.key=value` overrides, strict key checking.

Every field has a type and a default; a YAML file or a CLI override may only name fields that exist, so a typo
fails before Ray or MLflow start instead of being silently ignored.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import JobError


@dataclass
class RunSection:
    """Identity and storage of a training run (same name + storage_path = resume)."""
    name: str | None = None            # None -> a fresh "a2u-<timestamp>" name
    storage_path: str = "runs/ray"     # made absolute; shared storage (NFS, s3://) on multi-node clusters
    seed: int = 0


@dataclass
class DataSection:
    """What the pipeline loader is asked for (see pipeline.build_train_loader)."""
    dataset_dir: str = "data/synthetic"
    crop_size: int = 512
    batch_size: int = 8                # per worker
    iterations_per_epoch: int | None = None   # None -> the loader's default (from the fg count)
    num_threads: int | None = None
    crop_workers: int = 0              # processes for the loader's crop step (0: in its own thread); see README
    composites: bool = False
    photo_ratio: float = 0.0           # share of batches of real photos (photo-* shards), never re-composited
    augment: dict = field(default_factory=dict)   # passed to the loader as **augment_options


@dataclass
class ModelSection:
    """Network options passed to model.net.A2UMatting (empty = the released configuration)."""
    options: dict = field(default_factory=dict)
    sync_batchnorm: bool = True        # converted only when world size > 1
    pretrained: str = "none"           # none | torchvision | PATH: ImageNet ResNet-34 encoder init (model/pretrained.py)


@dataclass
class OptimSection:
    """A2U recipe (docs/model.md §4.4): Adam, backbone LR / 100, MultiStepLR stepped once per epoch."""
    lr: float = 0.01
    backbone_lr_ratio: float = 0.01
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    epochs: int = 30
    milestones: list = field(default_factory=lambda: [20, 26])
    gamma: float = 0.1
    grad_clip_norm: float | None = None
    max_train_minutes: float | None = None  # stop (checkpoint + register) after this much training per attempt


@dataclass
class ScalingSection:
    """Ray Train worker group."""
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: int = 1
    local_num_cpus: int | None = None  # ray.init(num_cpus=...) for the embedded local cluster; None -> all cores


@dataclass
class PerfSection:
    """Speed switches (safe defaults): autocast dtype, memory format, fused optimiser, torch.compile / CUDA graphs.

    The step never waits for the GPU except every `tracking.log_every_n_steps` steps (and at checkpoints and epoch
    ends), where the loss, the NaN/inf guard and the time budget are checked across ranks in one all-reduce."""
    amp_dtype: str = "auto"            # auto (bf16 on GPU, off on CPU) | bf16 | fp16 (with loss scaling) | none
    channels_last: bool = False
    fused_optimizer: bool = True       # Adam(fused=True) on CUDA (one kernel for all parameters); CPU: torch's default
    compile: bool = False
    # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs
    compile_mode: str = "default"
    # A2U reassembly: auto (fused Triton kernels on CUDA) | fused | reference; None keeps $A2U_OPS_BACKEND (or auto)
    ops_backend: str | None = None
    find_unused_parameters: bool = False
    # cuDNN times its convolution algorithms on the first step of each input shape and keeps the fastest (GPU only):
    # training crops have one shape; validation (whole images, many sizes) runs with it off
    cudnn_benchmark: bool = True


@dataclass
class CheckpointSection:
    """Checkpoint cadence and fault tolerance."""
    every_n_steps: int = 1000          # 0 = only at epoch end
    num_to_keep: int = 2
    max_failures: int = 0


@dataclass
class ValSection:
    """Per-epoch validation on the dataset's `val` split (never the test split)."""
    enabled: bool = True
    max_samples: int | None = None


@dataclass
class TrackingSection:
    """MLflow: where to log, what to register."""
    tracking_uri: str | None = None    # None -> $MLFLOW_TRACKING_URI -> sqlite:///<cwd>/runs/mlflow.db
    experiment: str = "a2u-matting"
    artifact_location: str | None = None  # where a new experiment keeps artifacts/models (e.g. s3://bucket/mlflow); None -> next to a sqlite store
    registered_model_name: str = "a2u-matting"
    log_every_n_steps: int = 1
    log_images: bool = True
    log_model: bool = True
    serialization_format: str = "pickle"  # pickle (+ code_paths model/) | pt2 (torch.export; slow for this net) | auto (pt2, else pickle)


@dataclass
class DebugSection:
    """Fault-injection knobs used by the tests (off by default)."""
    fail_at_step: int | None = None    # the worker of rank `fail_rank` dies (os._exit) once when reaching this step
    fail_rank: int = 1
    nan_at_step: int | None = None     # the loss is replaced by NaN at this step


@dataclass
class TrainConfig:
    """The whole experiment; `to_dict()` is what is logged and stored in checkpoints."""
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    perf: PerfSection = field(default_factory=PerfSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    val: ValSection = field(default_factory=ValSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    debug: DebugSection = field(default_factory=DebugSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    ("perf", "amp_dtype"): ("auto", "bf16", "fp16", "none"),
    ("perf", "compile_mode"): ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    ("perf", "ops_backend"): (None, "auto", "fused", "reference"),
    ("tracking", "serialization_format"): ("auto", "pt2", "pickle"),
}


def _type_ok(value: Any, annotation: Any) -> bool:
    """Check `value` against a field annotation (int, float, str, bool, list, dict and `X | None`)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing), {})  # annotations are strings under `from __future__`
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _valid_keys(section: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(section)]


def _set(cfg: TrainConfig, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if parts[0] not in _valid_keys(cfg):
        raise JobError(f"{source}: unknown config section {parts[0]!r}; valid sections: {', '.join(_valid_keys(cfg))}")
    section = getattr(cfg, parts[0])
    if len(parts) == 1:
        if not isinstance(value, dict):
            raise JobError(f"{source}: {dotted!r} is a section; give a mapping or a key like {dotted}.{_valid_keys(section)[0]}")
        for k, v in value.items():
            _set(cfg, f"{dotted}.{k}", v, source)
        return
    key = parts[1]
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        valid = ", ".join(f"{parts[0]}.{k}" for k in fields)
        raise JobError(f"{source}: unknown config key '{parts[0]}.{key}'; valid keys: {valid}")
    annotation = fields[key].type
    if len(parts) > 2:  # a key inside a free-form mapping field, e.g. model.options.upsampler=bilinear
        current = getattr(section, key)
        if not isinstance(current, dict):
            raise JobError(f"{source}: {parts[0]}.{key} is not a mapping, cannot set {dotted!r}")
        node = current
        for p in parts[2:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        return
    if "float" in str(annotation) and "int" not in str(annotation):
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
    if not _type_ok(value, annotation):
        raise JobError(f"{source}: {dotted} must be {annotation}, got {value!r} ({type(value).__name__})")
    choices = _CHOICES.get((parts[0], key))
    if choices and value not in choices:
        raise JobError(f"{source}: {dotted} must be one of {choices}, got {value!r}")
    setattr(section, key, value)


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", YAML-parsed value), so numbers, booleans, null and lists get their types."""
    if "=" not in text:
        raise JobError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise JobError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip(), value


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (plain PyYAML keeps the last one silently, so a
    stale section would override the intended one without a word)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key != "<<" and key in seen:
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                    f"found the key {key!r} twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file, then the overrides; every key checked against the schema."""
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise JobError(f"config file {path} does not exist (configs live in jobs/configs/)")
        try:
            data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
        except yaml.YAMLError as exc:
            raise JobError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise JobError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
        for key, value in data.items():
            _set(cfg, str(key), value, str(path))
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key, value, f"override {text!r}")
    validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored in a checkpoint or logged to MLflow."""
    cfg = TrainConfig()
    for key, value in data.items():
        _set(cfg, key, value, "stored config")
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    positive = {"data.crop_size": cfg.data.crop_size, "data.batch_size": cfg.data.batch_size,
                "scaling.num_workers": cfg.scaling.num_workers, "optim.epochs": cfg.optim.epochs,
                "scaling.cpus_per_worker": cfg.scaling.cpus_per_worker,
                "tracking.log_every_n_steps": cfg.tracking.log_every_n_steps}
    for key, value in positive.items():
        if value < 1:
            raise JobError(f"config: {key} must be >= 1, got {value}")
    if cfg.data.crop_size % 16:
        raise JobError(f"config: data.crop_size must be a multiple of 16 (the network stride), got {cfg.data.crop_size}")
    if not (math.isfinite(cfg.data.photo_ratio) and 0.0 <= cfg.data.photo_ratio <= 1.0):
        raise JobError(f"config: data.photo_ratio must be in [0, 1], got {cfg.data.photo_ratio}")
    if cfg.data.photo_ratio >= 1.0 and cfg.data.composites:
        raise JobError("config: data.photo_ratio 1 trains on photos only; data.composites must then be false")
    if cfg.data.crop_workers < 0:
        raise JobError(f"config: data.crop_workers must be >= 0 (0: the crop step on the loader's thread), got "
                       f"{cfg.data.crop_workers}")
    if cfg.checkpoint.every_n_steps < 0 or cfg.checkpoint.max_failures < 0:
        raise JobError("config: checkpoint.every_n_steps and checkpoint.max_failures must be >= 0")
    pretrained = cfg.model.pretrained.strip()
    if pretrained.lower() not in ("none", "torchvision") and not Path(pretrained).expanduser().is_file():
        raise JobError(f"config: model.pretrained must be none, torchvision or an existing weights file; "
                       f"{pretrained!r} does not exist")
    if sorted(cfg.optim.milestones) != list(cfg.optim.milestones):
        raise JobError(f"config: optim.milestones must be increasing, got {cfg.optim.milestones}")
    o = cfg.optim
    for key, value, low, inclusive in (("optim.lr", o.lr, 0.0, False), ("optim.eps", o.eps, 0.0, False),
                                       ("optim.gamma", o.gamma, 0.0, False),
                                       ("optim.backbone_lr_ratio", o.backbone_lr_ratio, 0.0, True),
                                       ("optim.weight_decay", o.weight_decay, 0.0, True)):
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise JobError(f"config: {key} must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value}")
    if len(o.betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in o.betas):
        raise JobError(f"config: optim.betas must be two numbers in [0, 1), got {o.betas}")
    _check_mapping("data.augment", cfg.data.augment, _augment_check)
    _check_mapping("model.options", cfg.model.options, _model_options_check)


def _check_mapping(key: str, values: dict, check: Any) -> None:
    """Check a free-form mapping section against the keyword arguments of what consumes it, with the same message
    as the typed sections: a typo fails here, not inside a Ray worker after the MLflow run exists."""
    known, problem = check(values)
    unknown = sorted(set(values) - set(known))
    if unknown:
        valid = ", ".join(f"{key}.{k}" for k in known)
        raise JobError(f"config: unknown config key '{key}.{unknown[0]}'; valid keys: {valid}")
    if problem:
        raise JobError(f"config: {key}: {problem}")


def _augment_check(values: dict) -> tuple[list[str], str | None]:
    from pipeline.options import AugmentOptions

    known = [f.name for f in dataclasses.fields(AugmentOptions)]
    if set(values) - set(known):
        return known, None
    try:
        AugmentOptions.from_kwargs(**values)
    except (TypeError, ValueError) as exc:
        return known, str(exc)
    return known, None


def _model_options_check(values: dict) -> tuple[list[str], str | None]:
    import inspect

    from model.net import A2UMatting

    known = [p for p in inspect.signature(A2UMatting.__init__).parameters if p != "self"]
    if set(values) - set(known):
        return known, None
    try:
        A2UMatting(**values)
    except (TypeError, ValueError) as exc:
        return known, str(exc)
    return known, None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the form MLflow params take."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
