"""Triton kernels behind `model.fused_ops` (imported lazily: triton is optional for the rest of `model/`)."""
