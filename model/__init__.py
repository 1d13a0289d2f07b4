"""A2U matting in plain PyTorch: operators, kernel generator, network, losses, official metrics, inference."""
from model.checkpoints import load_official_checkpoint
from model.inference import predict_alpha
from model.kernel_generator import A2UKernelGenerator
from model.losses import matting_loss
from model.metrics import evaluate
from model.net import A2UMatting, convert_sync_batchnorm, count_parameters, parameter_groups
from model.ops import a2u_downsample, a2u_upsample

__all__ = [
    "A2UKernelGenerator",
    "A2UMatting",
    "a2u_downsample",
    "a2u_upsample",
    "convert_sync_batchnorm",
    "count_parameters",
    "evaluate",
    "load_official_checkpoint",
    "matting_loss",
    "parameter_groups",
    "predict_alpha",
]
