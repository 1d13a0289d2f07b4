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

    def predict(self, net, image, trimap):
        """`model.inference.predict_alpha` of one image with these options. Running out of accelerator memory is
        this image's failure (ValueError, as for other per-image problems, with the option that helps), not the
        end of a run over many images; the cache is emptied so that the next image starts clean."""
        import torch

        from model.inference import predict_alpha

        try:
            return predict_alpha(net, image, trimap, max_pixels=self.pixels(), tta=self.tta, pad=self.pad)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
            raise ValueError(f"out of GPU memory ({first[:200]}); a smaller --max-pixels (now {self.pixels()}) "
                             "tiles the image into smaller pieces") from exc

    def tag(self) -> str:
        return f"tta={self.tta},pad={self.pad},max_pixels={self.pixels()}"
