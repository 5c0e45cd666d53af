"""The one preset registry, as data. A preset is a network configuration, the training recipe that goes
with it (`TrainConfig` overrides as dotted keys), the read-out to use its maps with and the face-box
formats it accepts; a shipped model is a preset with a weights file in ``rcn_keras/weights/``.

No TensorFlow here: the command line lists and validates presets before it imports it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import pathlib

from rcn_keras.models.config import READOUTS, DenoiserConfig, ModelConfig

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
# Parameter counts of the presets' networks, as data (`rcn models` lists them without TensorFlow;
# tests/test_presets.py checks them against the built networks).
PARAMETERS_FILE = pathlib.Path(__file__).resolve().parent / "preset_parameters.json"


@dataclasses.dataclass(frozen=True)
class Preset:
    """``model``: the network. ``recipe``: how it is trained (dotted `TrainConfig` keys). ``readout``:
    how keypoints are read from its maps. ``box_formats``: name -> (scale, shift x, shift y) of the
    face boxes it accepts (``None``: the defaults for its keypoint count, `rcn_keras.boxes`).
    ``weights``: file name of a trained `Landmarker` in ``rcn_keras/weights/`` (shipped models only)."""

    name: str
    model: ModelConfig | DenoiserConfig
    recipe: dict = dataclasses.field(default_factory=dict)
    readout: str = "argmax"
    box_formats: dict | None = None
    weights: str | None = None
    description: str = ""

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"preset {self.name!r}: readout={self.readout!r} is not allowed; allowed: {READOUTS}")
        object.__setattr__(self, "model", self.model.replace(name=self.name))

    @property
    def is_denoiser(self) -> bool:
        return isinstance(self.model, DenoiserConfig)

    @property
    def num_keypoints(self) -> int:
        return self.model.num_keypoints

    @property
    def weights_path(self) -> pathlib.Path | None:
        """The shipped weights file, or ``None`` for an architecture-only preset."""
        return WEIGHTS_DIR / self.weights if self.weights else None

    def card(self) -> dict | None:
        """The model card data of a shipped model (``<name>.json`` beside its weights: data, budget,
        scores), or ``None``."""
        if not self.weights:
            return None
        path = WEIGHTS_DIR / f"{pathlib.Path(self.weights).stem}.json"
        return json.loads(path.read_text()) if path.is_file() else None


_MTFL = dict(layout="mtfl", num_keypoints=5)
_300W = dict(layout="300w", num_keypoints=68)
# The authors' networks (docs/model.md, 3-5; their README's L2 coefficients, 5.5).
SUMNET_MTFL = ModelConfig(family="sumnet", branches=6, l2_encoder=1e-10, l2_decoder=1e-14, l2_branch_weights=1e-14,
                          **_MTFL)
SUMNET_300W = ModelConfig(family="sumnet", branches=5, l2_encoder=1e-14, l2_decoder=1e-6, **_300W)
RCN_MTFL = ModelConfig(family="rcn", branches=6, l2_encoder=1e-6, l2_decoder=1e-12, **_MTFL)
RCN_300W = ModelConfig(family="rcn", branches=5, l2_encoder=1e-12, l2_decoder=1e-8, **_300W)
# The fast 68-point network (issue 17): RCN's coarse-to-fine concatenation with depthwise-separable
# convs, channels growing towards the coarse levels, and the K maps emitted at 40x40 and upsampled.
RCN_300W_FAST = RCN_300W.replace(layout="fast", output_level=1)

# The authors' training (their README commands; rotation per docs/model.md 10, item 3).
PAPER = {"augment.rotation": 20}
# The CPU-budget recipe of the *_tuned presets (picked on the validation split, issue 5).
TUNED = {"optimizer": "adam", "learning_rate": 1e-3, "augment.rotation": 20, "augment.flip": True}
# The real-face recipe of issue 15 for this CPU (bfloat16 where the CPU has it): Adam with a warm-up
# and a cosine decay, flips, wider rotation, photometric jitter, box jitter of the size detectors
# leave (the default scale / translation), sub-pixel (bilinear) targets, read-out and shape prior
# picked on validation.
REAL = {"epochs": 240, "batch_size": 64, "optimizer": "adam", "learning_rate": 1e-3, "lr_schedule": "cosine",
        "warmup_epochs": 3, "loss_target": "bilinear", "augment.rotation": 30, "augment.flip": True,
        "augment.gamma": 0.3, "augment.contrast": 0.3, "augment.blur": 0.3, "augment.noise": 8.0,
        "readout": "auto", "shape_prior": "auto", "visualize_every": 10}
# Stage 2 of rcn-300w (issue 15): the stage-1 model fitted its training faces no better than the
# validation faces (5.64 vs 5.79 %), so capacity went to the augmentation. Fine-tuned without the
# occlusion and with rotation 15: 5.54 % after 25 epochs where the stage-1 augmentation stayed at 5.80 %
# (240 epochs: 5.34 %). Also the recipe of `--init rcn-300w` (fine-tuning the shipped model).
REFINE = {**REAL, "epochs": 240, "batch_size": 32, "learning_rate": 5e-4, "augment.occlusion": False,
          "augment.rotation": 15}
DENOISER_RECIPE = {"epochs": 100, "augment.rotation": 40, "augment.occlusion": False}

_SHIPPED_DATA_68 = {"data.source": "300w", "data.train_subsets": ["afw", "helen_train"], "data.test_subsets": [],
                    "data.validation": 0.1}

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("sumnet_mtfl", SUMNET_MTFL, {"epochs": 4000, **PAPER}, description="paper: SumNet, 5 points"),
    Preset("sumnet_300w", SUMNET_300W, {"epochs": 3000, **PAPER}, description="paper: SumNet, 68 points"),
    Preset("rcn_mtfl", RCN_MTFL, {"epochs": 4000, **PAPER}, description="paper: RCN, 5 points"),
    Preset("rcn_mtfl_skip", ModelConfig(family="rcn", branches=6, skip=True, l2_encoder=1e-4, l2_decoder=1e-4,
                                        **_MTFL), {"epochs": 3000, **PAPER},
           description="paper: RCN with skip connections, 5 points"),
    Preset("rcn_300w", RCN_300W, {"epochs": 3000, **PAPER}, description="paper: RCN, 68 points"),
    # The authors' released 300W model (trained_model/RCN_300W): max-only laterals, learned upsampling.
    Preset("rcn_300w_released", ModelConfig(family="rcn", branches=5, zero_non_pooled=True, upsampling="learned",
                                            l2_encoder=1e-10, l2_decoder=1e-8, **_300W), {"epochs": 4000, **PAPER},
           description="paper: the authors' released 300W model"),
    Preset("rcn_300w_skip", ModelConfig(family="rcn", branches=5, skip=True, l2_encoder=0.1, l2_decoder=0.1, **_300W),
           {"epochs": 3000, **PAPER}, description="paper: RCN with skip connections, 68 points"),
    Preset("rcn_300w_tuned", RCN_300W.replace(width=0.5), {"epochs": 3000, **TUNED}, readout="soft_argmax",
           description="rcn_300w at half width with Adam and flips (a CPU-budget recipe)"),
    Preset("rcn_mtfl_tuned", RCN_MTFL, {"epochs": 4000, **TUNED}, readout="local_soft_argmax",
           description="rcn_mtfl with Adam and flips (a CPU-budget recipe)"),
    Preset("rcn_300w_real", RCN_300W.replace(width=0.5), {**REAL, "epochs": 300, "batch_size": 32},
           readout="soft_argmax", description="the real-face recipe: half width, bfloat16, Adam + cosine, flips, "
                                              "photometric jitter (stage 1 of rcn-300w)"),
    Preset("rcn_300w_refine", RCN_300W.replace(width=0.5), REFINE, readout="soft_argmax",
           description="stage 2 of rcn-300w: fine-tune a trained rcn_300w_real (--init) without occlusion, "
                       "rotation 15"),
    Preset("rcn_mtfl_real", RCN_MTFL, {**REAL}, readout="soft_argmax",
           description="the real-face recipe, 5 points"),
    Preset("sumnet_mtfl_real", SUMNET_MTFL, {**REAL}, readout="soft_argmax",
           description="SumNet with the real-face recipe, 5 points (RCN's baseline for the figures)"),
    Preset("rcn_300w_fast", RCN_300W_FAST, {**REAL, "epochs": 300, "batch_size": 32}, readout="soft_argmax",
           description="68 points for a CPU at batch 1 (separable convs, 40x40 output), real-face recipe"),
    # The paper's denoiser: 25,406,212 parameters, receptive field 133 px, ~163 GMAC per image.
    Preset("denoiser_300w", DenoiserConfig(), DENOISER_RECIPE, description="paper: denoising keypoint model"),
    # CPU-trainable: the same 3-conv design on 20x20 maps (4x4 sum-pooled one-hots) with 11x11 kernels:
    # receptive field 124 px (vs 133), ~0.6 GMAC per image (~270x less); output logits are 4x4 blocks.
    Preset("denoiser_300w_cpu", DenoiserConfig(kernel_size=11, map_size=20), DENOISER_RECIPE,
           description="denoiser on 20x20 maps for a CPU"),
    # Shipped models: presets with weights (see weights/MODEL_CARD.md).
    Preset("rcn-300w", RCN_300W.replace(width=0.5), {**_SHIPPED_DATA_68, **REFINE},
           readout="soft_argmax", weights="rcn-300w.keras",
           description="shipped v4: 68 points, rcn_300w_real, rcn_300w_refine, 25 epochs with the coordinate loss on 300W AFW + HELEN; shape prior"),
    # The most accurate 68-point model: v4's three stages at input_size 160 (a finer branch H sees the face at
    # twice the pixels; the maps stay 80x80). About 1.3x v4's time per face.
    Preset("rcn-300w-hr", RCN_300W.replace(width=0.5, input_size=160, branches=6, output_level=1),
           {**_SHIPPED_DATA_68, **REFINE}, readout="soft_argmax", weights="rcn-300w-hr.keras",
           description="shipped v1: 68 points from a 160x160 crop, v4's recipe (rcn_300w_real, rcn_300w_refine, "
                       "coordinate loss) with the finer branch H; shape prior; the most accurate, 1.3x rcn-300w's time"),
    # v2 (issue 33): v1 distilled from rcn-300w with its 40x40 maps read as they are (upsample_maps=False);
    # v3: v2 distilled 16 more epochs the same way (Adam 3e-4); v4: v3 distilled 8 more epochs from rcn-300w-hr
    # (6.23 against 6.30 %; 8 more from rcn-300w: 6.27 %); v5-v7: 16 more epochs each from rcn-300w-hr; v8: v7 with
    # a light shape prior (32 modes, 3 x 4 steps) and an int8 TFLite twin, at v7's time per face.
    Preset("rcn-300w-fast", RCN_300W_FAST.replace(upsample_maps=False),
           {**_SHIPPED_DATA_68, **REAL, "epochs": 300, "batch_size": 32}, readout="soft_argmax",
           weights="rcn-300w-fast.keras",
           description="shipped v8: 68 points for a CPU at batch 1, rcn_300w_fast (40x40 maps) distilled from rcn-300w, "
                       "then rcn-300w-hr; a light shape prior, an int8 TFLite twin"),
    Preset("rcn-afw5", RCN_MTFL, {"data.source": "300w", "data.train_subsets": ["helen_train"],
                                  "data.test_subsets": ["afw"], **REAL},
           readout="soft_argmax", weights="rcn-afw5.keras",
           description="shipped v2: 5 points, rcn_mtfl_real trained on 300W HELEN, tested on AFW"),
    Preset("rcn-mtfl", RCN_MTFL, {"data.source": "mtfl", "epochs": 120, **PAPER}, readout="soft_argmax",
           weights="rcn-mtfl.keras",
           description="shipped v3: 5 points, the paper's rcn_mtfl and recipe on MTFL (120 epochs), tested on AFLW and AFW"),
    # RCN's baseline trained exactly as rcn-afw5 (same data, recipe, epochs, budget): for the figures.
    Preset("sumnet-afw5", SUMNET_MTFL, {"data.source": "300w", "data.train_subsets": ["helen_train"],
                                        "data.test_subsets": ["afw"], **REAL},
           readout="soft_argmax", weights="sumnet-afw5.keras",
           description="shipped for the figures: SumNet trained as rcn-afw5 (SumNet vs RCN maps)"),
)}


def parameter_counts() -> dict[str, int]:
    """Preset name -> parameters of its network (from `PARAMETERS_FILE`; empty when it is missing)."""
    try:
        return {str(k): int(v) for k, v in json.loads(PARAMETERS_FILE.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def list_presets(shipped: bool | None = None, denoisers: bool | None = None) -> list[str]:
    """Preset names, sorted; ``shipped=True`` only those with weights, ``False`` only those without;
    ``denoisers`` likewise for the denoising model."""
    return sorted(n for n, p in PRESETS.items()
                  if (shipped is None or bool(p.weights) == shipped)
                  and (denoisers is None or p.is_denoiser == denoisers))


def get_preset(name: str) -> Preset:
    """The preset ``name``; an unknown name raises a ValueError with the closest match and the list."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown preset {name!r}{hint}; available: {', '.join(list_presets())}")
    return PRESETS[name]
