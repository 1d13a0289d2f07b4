"""How predictions are made: the options of model/inference.py that `predict` (local, s3, Ray) and `evaluate` take
from the command line, carried as one value so every path applies them the same way."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InferenceOptions:
    """Test-time augmentation, padding mode and tiling threshold; part of what makes two scores comparable."""
    tta: str = "none"
    pad: str = "reflect"
    max_pixels: int | None = None

    def pixels(self) -> int:
        """The tiling threshold in effect (the inference default when none was given)."""
        from model.inference import DEFAULT_MAX_PIXELS

        return self.max_pixels or DEFAULT_MAX_PIXELS

    def tag(self) -> str:
        return f"tta={self.tta},pad={self.pad},max_pixels={self.pixels()}"
