"""One configuration object per network (`ModelConfig` for SumNet / RCN, `DenoiserConfig` for the
denoising keypoint model), validated on creation, JSON round-trippable, and the read-out names.
No TensorFlow here: the command line reads these before it imports it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rcn_keras.grid import MAP_SIZE
from rcn_keras.options import check_fields

FAMILIES = ("sumnet", "rcn")
LAYOUTS = ("mtfl", "300w", "fast")
UPSAMPLINGS = ("nearest", "learned")
LCN_FLOORS = ("image", "batch")
MIN_BRANCHES, MAX_BRANCHES = 4, 7
INPUT_SIZE = MAP_SIZE
# Input crop sides: 80 (the paper) or 160, where a finer level "H" (160x160) feeds the F level's trunk.
INPUT_SIZES = (MAP_SIZE, 2 * MAP_SIZE)
# Map -> keypoint read-outs of `KeypointReadout` (docs/model.md, 5.3).
READOUTS = ("argmax", "soft_argmax", "local_soft_argmax")
# Level names, finest first: spatial size 80, 40, 20, 10, 5, 2, 1 (docs/model.md, 2); a 160x160 input
# adds the level H in front (`ModelConfig.levels`).
LEVELS = ("F", "M", "C", "D", "S", "T", "O")
LEVEL_SIZES = (80, 40, 20, 10, 5, 2, 1)
FINER_LEVEL, FINER_SIZE = "H", 2 * MAP_SIZE
OUTPUT_LEVELS = (0, 1)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines one SumNet / RCN network (docs/model.md, 2-5).

    ``branch_mask`` lists one 0/1 per branch, **finest first** (F, M, C, D, ...); ``None`` = all on.
    ``layout`` picks the channel / kernel tables: "mtfl" (3x3 decoder, 16-48 channels),
    "300w" (64 channels, 5x5 + 1x1 decoder) or "fast" (RCN only: depthwise-separable convs, 8-64
    channels growing towards the coarse levels, for a CPU at batch 1); ``width`` scales every hidden channel count (1.0 = the
    paper; 0.5 costs about a quarter). ``output_level=1`` ends the decoder at 40x40, its maps upsampled
    bilinearly to 80x80 unless ``upsample_maps=False`` (40x40 maps: the read-out's softmax over a quarter of
    the pixels, about half of the fast model's time per face). L2 coefficients follow docs/model.md 5.5's
    three groups.

    ``input_size=160`` (RCN only) sees the face at twice the pixels: a finer branch H at 160x160 (one
    trunk conv on the full-resolution crop, max-pooled) joins the 80x80 level's input beside the crop
    averaged down to 80, so F..S work as at 80 and a network trained at 80 starts there as itself
    (`transfer`); the decoder then ends at F (``output_level=1``: the level index counts H as 0) and the
    maps stay 80x80.
    """

    family: str = "rcn"
    layout: str = "mtfl"
    num_keypoints: int = 5
    branches: int = 6
    branch_mask: tuple[int, ...] | None = None
    skip: bool = False
    upsampling: str = "nearest"
    zero_non_pooled: bool = False
    extra_fine: bool = False
    weight_per_pixel: bool = False
    dropout: bool = False
    width: float = 1.0
    output_level: int = 0
    upsample_maps: bool = True
    lcn: bool = True
    lcn_floor: str = "image"
    l2_encoder: float = 0.0
    l2_decoder: float = 0.0
    l2_branch_weights: float | None = None
    seed: int = 54621
    input_size: int = INPUT_SIZE
    name: str = field(default="", compare=False)

    def __post_init__(self):
        def bad(arg, value, allowed):
            raise ValueError(f"{arg}={value!r} is not allowed; allowed: {allowed}")

        if self.family not in FAMILIES:
            bad("family", self.family, FAMILIES)
        if self.layout not in LAYOUTS:
            bad("layout", self.layout, LAYOUTS)
        if self.upsampling not in UPSAMPLINGS:
            bad("upsampling", self.upsampling, UPSAMPLINGS)
        if self.lcn_floor not in LCN_FLOORS:
            bad("lcn_floor", self.lcn_floor, LCN_FLOORS)
        if not isinstance(self.branches, int) or not MIN_BRANCHES <= self.branches <= MAX_BRANCHES:
            bad("branches", self.branches, f"an integer from {MIN_BRANCHES} to {MAX_BRANCHES}")
        if not isinstance(self.num_keypoints, int) or self.num_keypoints < 1:
            bad("num_keypoints", self.num_keypoints, "a positive integer")
        if self.input_size not in INPUT_SIZES:
            bad("input_size", self.input_size, f"{INPUT_SIZES} (crop side in pixels)")
        if self.input_size != INPUT_SIZE and self.family != "rcn":
            bad("input_size", self.input_size, f"{INPUT_SIZE} for family='sumnet'; {INPUT_SIZES} for 'rcn'")
        if self.input_size != INPUT_SIZE and self.output_level != 1:
            bad("output_level", self.output_level, "1 with input_size=160 (the decoder ends at F: 80x80 maps)")
        if self.input_size != INPUT_SIZE and self.branches < 5:
            bad("branches", self.branches, "5 to 7 with input_size=160 (H and at least F, M, C, D)")
        if self.branch_mask is not None:
            mask = tuple(self.branch_mask)
            if len(mask) != self.branches or any(m not in (0, 1) for m in mask):
                bad("branch_mask", self.branch_mask,
                    f"{self.branches} values of 0 or 1, finest branch first (one per branch)")
            if not any(mask):
                bad("branch_mask", self.branch_mask, "at least one 1 (an all-zero mask leaves no branch)")
            object.__setattr__(self, "branch_mask", tuple(int(m) for m in mask))
        if self.layout == "fast" and self.family != "rcn":
            bad("layout", self.layout, "'fast' only for family='rcn'; for SumNet: ('mtfl', '300w')")
        if self.output_level not in OUTPUT_LEVELS:
            bad("output_level", self.output_level, f"{OUTPUT_LEVELS} (0 = F, 80x80; 1 = M, 40x40 upsampled; "
                                                   f"with input_size=160: 1 = F)")
        if self.output_level and self.family != "rcn":
            bad("output_level", self.output_level, "0 for family='sumnet' (each branch has its own output)")
        if not isinstance(self.upsample_maps, bool):
            bad("upsample_maps", self.upsample_maps, "true or false")
        if not self.upsample_maps and not self.output_level:
            bad("upsample_maps", self.upsample_maps, "true, or false with output_level=1 (maps at 40x40)")
        if self.skip and self.family != "rcn":
            bad("skip", self.skip, "True only for family='rcn'")
        if self.zero_non_pooled and self.family != "rcn":
            bad("zero_non_pooled", self.zero_non_pooled, "True only for family='rcn'")
        if not 0 < self.width <= 4:
            bad("width", self.width, "a channel multiplier in (0, 4]")
        for arg in ("l2_encoder", "l2_decoder"):
            if getattr(self, arg) < 0:
                bad(arg, getattr(self, arg), "a non-negative float")

    @property
    def mask(self) -> tuple[int, ...]:
        """Branch mask, finest first, with ``None`` expanded to all ones."""
        return self.branch_mask or (1,) * self.branches

    @property
    def levels(self) -> tuple[str, ...]:
        """Names of this network's levels, finest first: F, M, ... (H, F, M, ... for a 160x160 input)."""
        return LEVELS if self.input_size == INPUT_SIZE else (FINER_LEVEL,) + LEVELS[:-1]

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Spatial side of each level of `levels`."""
        return LEVEL_SIZES if self.input_size == INPUT_SIZE else (FINER_SIZE,) + LEVEL_SIZES[:-1]

    @property
    def map_size(self) -> int:
        """Side of the keypoint maps the network emits: 80, or its output level's (40) without upsampling."""
        size = self.level_sizes[self.output_level]
        return max(size, MAP_SIZE) if self.upsample_maps else size

    @property
    def top_level(self) -> int:
        """Index (0 = F) of the coarsest active branch: the trunk is built up to here."""
        return max(i for i, m in enumerate(self.mask) if m)

    def replace(self, **overrides) -> "ModelConfig":
        """A copy with some fields changed; unknown field names raise a ValueError listing the valid ones."""
        check_fields(type(self), overrides, "model option")
        if "branches" in overrides and "branch_mask" not in overrides:
            overrides["branch_mask"] = None
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["branch_mask"] = list(self.branch_mask) if self.branch_mask is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        if d.get("branch_mask") is not None:
            d["branch_mask"] = tuple(d["branch_mask"])
        return cls().replace(**d)


@dataclass(frozen=True)
class DenoiserConfig:
    """The denoising keypoint model (docs/model.md, 8). ``map_size`` is the resolution the convs work at
    (80 = the paper; 40 or 20 sum-pool the one-hot input and upsample the output logits by nearest
    repetition). ``kernel_size`` is the conv size."""

    num_keypoints: int = 68
    kernel_size: int = 45
    filters: int = 64
    convs: int = 3
    map_size: int = MAP_SIZE
    l2: float = 1e-6
    seed: int = 54621
    name: str = field(default="", compare=False)

    def __post_init__(self):
        if self.map_size not in (80, 40, 20, 16, 10):
            raise ValueError(f"map_size={self.map_size} is not allowed; allowed: 80, 40, 20, 16, 10 (divisors of 80)")
        for arg in ("num_keypoints", "kernel_size", "filters", "convs"):
            if not isinstance(getattr(self, arg), int) or getattr(self, arg) < 1:
                raise ValueError(f"{arg}={getattr(self, arg)!r} must be a positive integer")

    @property
    def receptive_field(self) -> int:
        """Receptive field of the conv stack in 80x80 pixels."""
        return (self.convs * (self.kernel_size - 1) + 1) * (MAP_SIZE // self.map_size)

    def replace(self, **overrides) -> "DenoiserConfig":
        """A copy with some fields changed; unknown names raise a ValueError listing the valid ones."""
        check_fields(type(self), overrides, "denoiser option")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
