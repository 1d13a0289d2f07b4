"""Every knob of the training augmentation (the A2U/GCA recipe, docs/model.md §4.2) in one dataclass.

`build_train_loader(..., **augment_options)` passes its keyword arguments here; unknown names are refused. Sizes that
the recipe states for 512-pixel crops (the 640 random resize, the 1024 rotation threshold, the erosion kernels up to 29)
are scaled by `crop_size / 512`, so a 128-pixel CPU crop gets a 160 resize, a 256 rotation threshold and kernels up to
7: the same augmentation relative to the crop.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

REFERENCE_CROP = 512


@dataclass(frozen=True)
class AugmentOptions:
    """Names and defaults of the training augmentation; `p_*` are probabilities, 0 switches a step off."""

    p_combine: float = 0.5          # second-foreground combination (step 1)
    p_resize: float = 0.25          # square resize to `resize_size` (step 1, nearest, aspect ignored)
    resize_size: int = 640          # at crop 512; scaled with the crop
    affine: bool = True             # random affine (step 2)
    scale_range: tuple[float, float] = (0.8, 1.25)
    shear_deg: float = 10.0         # shear ~ U(-shear, shear)
    rotation_deg: float = 30.0      # rotation ~ U(-rot, rot), only when max(H, W) >= rotation_min_size
    rotation_min_size: int = 1024   # at crop 512; scaled with the crop
    p_affine_flip: float = 0.5      # per-axis flips inside the affine (so vertical flips happen too)
    p_hflip: float = 0.5            # horizontal flip (step 3)
    erosion_max: int = 29           # trimap erosion kernel sizes ~ U{1..max} (step 4), at crop 512; scaled
    upscale_factor: float = 1.1     # small images are upscaled to factor*crop on the shorter side (step 5)
    min_unknown: int = 10           # fewer valid unknown centre pixels -> uniformly random crop
    hsv_jitter: bool = True         # colour jitter of the foreground (step 6)
    hue_range: int = 40             # hue += U{-range .. range-1} degrees
    skip_corrupt: bool = False      # corrupt samples: False -> DatasetError; True -> skip, count in loader.skipped

    def __post_init__(self) -> None:
        for name in ("p_combine", "p_resize", "p_affine_flip", "p_hflip"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment option {name}={v} is not a probability in [0, 1]")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"augment option scale_range={self.scale_range} must satisfy 0 < low <= high")
        if self.erosion_max < 1 or self.resize_size < 1 or self.upscale_factor < 1.0:
            raise ValueError("augment options erosion_max, resize_size must be >= 1 and upscale_factor >= 1")

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> "AugmentOptions":
        """Build from `**augment_options`, refusing names that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown augment option(s) {unknown}; known: {sorted(names)}")
        if "scale_range" in kwargs:
            kwargs["scale_range"] = tuple(kwargs["scale_range"])  # type: ignore[arg-type]
        return cls(**kwargs)  # type: ignore[arg-type]

    def scaled(self, crop_size: int) -> "ScaledSizes":
        """The recipe's absolute sizes for this crop size."""
        f = crop_size / REFERENCE_CROP
        return ScaledSizes(
            resize=max(crop_size, round(self.resize_size * f)),
            rotation_min=max(1, round(self.rotation_min_size * f)),
            erosion_max=max(1, round(self.erosion_max * f)),
        )


@dataclass(frozen=True)
class ScaledSizes:
    """Recipe sizes after scaling to the crop size."""

    resize: int
    rotation_min: int
    erosion_max: int
