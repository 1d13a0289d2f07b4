"""A2U matting in plain PyTorch: operators, kernel generator, network, losses, official metrics, inference."""
from model.inference import predict_alpha
from model.metrics import evaluate

__all__ = ["evaluate", "predict_alpha"]
