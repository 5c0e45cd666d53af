"""`TrainConfig`: one object per training run (preset + network options, data, augmentation, optimiser,
schedule, precision, output folder), validated where it is made, JSON round-trippable and overridable
by dotted keys. A preset's recipe (`rcn_keras.presets`) is the starting point of `preset_train_config`."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass, field

from rcn_keras.data.augment import AugmentConfig
from rcn_keras.data.sources import DataConfig, has_partial_labels
from rcn_keras.keypoints import FACE_68, GROUPS_68, REGIONS_68, KeypointScheme, as_scheme
from rcn_keras.losses import TARGETS, PixelNLL
from rcn_keras.models.config import READOUTS, DenoiserConfig, ModelConfig
from rcn_keras.options import check_fields
from rcn_keras.presets import get_preset
from rcn_keras.runtime import PRECISIONS, STRATEGIES

SWITCHES = ("auto", "on", "off")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adadelta", "sgd", "adam")
READOUT_CHOICES = READOUTS + ("auto",)
SHAPE_PRIOR_CHOICES = ("off", "on", "auto")
# Options a resumed run may change (applied, and said): the rest must equal the run's config.json.
# A changed ``epochs`` re-plans the cosine schedule over the new length from the update reached.
LABEL_OFFSET_CHOICES = SHAPE_PRIOR_CHOICES
RESUME_SAFE = ("epochs", "time_budget_minutes", "visualize_every", "readout", "shape_prior", "label_offsets",
               "jit_compile")
RESUME_IGNORED = ("output_dir",)  # the folder may have been moved or renamed
# `mixed_precision` (auto/on/off, float16 only) became `precision`; old config.json files still load.
_OLD_MIXED = {"auto": "auto", "on": "mixed_float16", "off": "float32"}


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer" + (" (or null)" if allow_none else ""))


def _number(name: str, value, low: float = 0.0, low_inclusive: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not low_inclusive):
        bound = f">= {low}" if low_inclusive else f"> {low}"
        raise ValueError(f"{name}={value!r} must be a finite number {bound}")


def _group(name: str, value, cls):
    """A nested options group from a dict (or already built), with one-line errors naming the key."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a group of options ({name}.KEY=VALUE), got {value!r}")
    check_fields(cls, value, "option", prefix=f"{name}.")
    try:
        return cls(**value)
    except TypeError as exc:  # a value of the wrong type inside the group's own checks
        raise ValueError(f"bad value in {name}: {exc}") from None


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults follow the authors' README (docs/model.md, 5.5 and 6):
    Adadelta (lr 1.0, rho 0.95, eps 1e-8), batch 64, best-validation model selection. ``readout``:
    how the saved `Landmarker` reads keypoints (``None``: the preset's; ``"auto"``: the read-out with the
    lowest NME on the validation split after training). ``keypoints``: the keypoint scheme (a
    `KeypointScheme` dict, a scheme name or a JSON file, stored as its dict; ``None``: the paper's scheme
    for the preset's point count); its point count overrides the preset's. ``init_from``: a trained model
    (`.keras` file or shipped name) whose network and weights start the run; the output layer is new
    when the point count differs (fine-tuning), its channels taken from the trained model's points
    ``init_points`` (one index per new point) when given, else starting at zero. ``distill_from``: trained
    models (`.keras` files or shipped names) whose averaged pixel probabilities on each training crop,
    flip-averaged when ``distill_flip``, are a second target, weighted by ``distill_weight``
    (`rcn_keras.distillation`), on every point of every training face; ``label_weight`` weighs the true
    labels' loss (0: the student learns from the teachers alone). ``shape_prior``: after training, fit a
    `ShapePrior` to the training faces' keypoints and save it with the model (``"on"``), keep it only if
    it lowers the validation NME (``"auto"``), or not (``"off"``). ``label_offsets``: after that, measure
    `LabelOffsets` on the training faces (each point's mean error: the labels' convention) and save them with
    the model, by the same three choices. ``weight_average``: the momentum of an
    exponential moving average of the weights, updated every step (Polyak averaging; 0: off, 0.999: about
    the last 1,000 updates); validation, the best checkpoint and the saved model then use the average.
    ``target_sigma``: the spread in map pixels of ``loss_target="gaussian"``. ``point_weights``: the weight
    of some keypoints' label loss, keyed by region (68 points: jaw, brows, nose, eyes, mouth) or point
    index, e.g. ``{"jaw": 2}``; the others weigh 1."""

    model: str = "rcn_mtfl"
    model_options: dict = field(default_factory=dict)
    keypoints: dict | str | None = None
    init_from: str | None = None
    init_points: list[int] | None = None
    n_corrupt: int = 35
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 4000
    batch_size: int = 64
    steps_per_epoch: int | None = None
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    rho: float = 0.95
    epsilon: float = 1e-8
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    weight_average: float = 0.0
    loss_target: str = "pixel"
    target_sigma: float = 1.0
    coordinate_loss: float = 0.0
    distill_from: list[str] | None = None
    distill_weight: float = 1.0
    distill_flip: bool = True
    label_weight: float = 1.0
    point_weights: dict | None = None
    jit_compile: str = "auto"
    precision: str = "auto"
    strategy: str = "default"
    readout: str | None = None
    shape_prior: str = "off"
    label_offsets: str = "auto"
    visualize_every: int = 1
    time_budget_minutes: float | None = None
    seed: int = 0
    output_dir: str = "runs/rcn"

    def __post_init__(self):
        self.data = _group("data", self.data, DataConfig)
        self.augment = _group("augment", self.augment, AugmentConfig)
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a group of options, got {self.model_options!r}")
        if self.keypoints is not None:
            self.keypoints = as_scheme(self.keypoints).to_dict()
            given = self.model_options.get("num_keypoints", self.keypoints["num_keypoints"])
            if given != self.keypoints["num_keypoints"]:
                raise ValueError(f"model_options.num_keypoints={given} disagrees with the keypoint scheme's "
                                 f"{self.keypoints['num_keypoints']} points")
        if self.data.source == "mtfl" and not self.is_denoiser and self.num_keypoints != 5:
            raise ValueError(f"data.source={self.data.source!r} has 5 keypoints but preset {self.model} predicts "
                             f"{self.num_keypoints}: pick a 5-point preset (e.g. rcn_mtfl_real)")
        if self.init_from is not None:
            check_model_spec(self.init_from, "init_from")
        if self.init_points is not None:
            if self.init_from is None:
                raise ValueError(f"init_points={self.init_points!r} picks points of the init_from model, and none "
                                 f"is given (--init)")
            if not isinstance(self.init_points, list) or len(self.init_points) != self.num_keypoints:
                raise ValueError(f"init_points={self.init_points!r} must list {self.num_keypoints} point indices of "
                                 f"the init_from model (one per point of the run)")
            bad = [(j, i) for j, i in enumerate(self.init_points)
                   if not isinstance(i, int) or isinstance(i, bool) or i < 0]
            if bad:
                raise ValueError(f"init_points[{bad[0][0]}]={bad[0][1]!r}: each entry must be the index (0 or more) "
                                 f"of a point of the init_from model")
        if self.distill_from is not None:
            if isinstance(self.distill_from, str):
                self.distill_from = [self.distill_from]
            if not isinstance(self.distill_from, list) or not self.distill_from \
                    or not all(isinstance(m, str) for m in self.distill_from):
                raise ValueError(f"distill_from={self.distill_from!r} must name one or more trained models "
                                 f"(.keras files or shipped names)")
            for spec in self.distill_from:
                check_model_spec(spec, "distill_from")
        if not isinstance(self.distill_flip, bool):
            raise ValueError(f"distill_flip={self.distill_flip!r} must be true or false")
        self.model_config()  # validates name and options now, not mid-run
        self.point_weight_vector()
        for name, allowed in (("jit_compile", SWITCHES), ("precision", PRECISIONS), ("lr_schedule", LR_SCHEDULES),
                              ("loss_target", TARGETS), ("strategy", STRATEGIES), ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed; allowed: {', '.join(allowed)}")
        if self.shape_prior not in SHAPE_PRIOR_CHOICES:
            raise ValueError(f"shape_prior={self.shape_prior!r} is not allowed; allowed: "
                             f"{', '.join(SHAPE_PRIOR_CHOICES)}")
        if self.label_offsets not in LABEL_OFFSET_CHOICES:
            raise ValueError(f"label_offsets={self.label_offsets!r} is not allowed; allowed: "
                             f"{', '.join(LABEL_OFFSET_CHOICES)}")
        if self.shape_prior == "on" and not self.is_denoiser and self.num_keypoints < 3:
            raise ValueError(f"shape_prior=on needs at least 3 keypoints (this run has {self.num_keypoints})")
        if self.readout is not None and self.readout not in READOUT_CHOICES:
            raise ValueError(f"readout={self.readout!r} is not allowed; allowed: {', '.join(READOUT_CHOICES)} "
                             f"(auto: picked on the validation split; null: the preset's)")
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("steps_per_epoch", self.steps_per_epoch, allow_none=True)
        for name in ("learning_rate", "epsilon"):
            _number(name, getattr(self, name), 0.0, low_inclusive=False)
        _number("rho", self.rho)
        _number("warmup_epochs", self.warmup_epochs)
        _number("weight_average", self.weight_average)
        if self.weight_average >= 1:
            raise ValueError(f"weight_average={self.weight_average!r} must be below 1 (the momentum of the "
                             f"moving average of the weights; 0: off)")
        _number("coordinate_loss", self.coordinate_loss)
        _number("target_sigma", self.target_sigma, 0.0, low_inclusive=False)
        _number("distill_weight", self.distill_weight)
        _number("label_weight", self.label_weight)
        if self.distill_weight != 1.0 and not self.distill_from:
            raise ValueError(f"distill_weight={self.distill_weight!r} weighs the distill_from teachers' maps, and no "
                             f"teacher is given")
        if self.label_weight == 0 and not self.distill_from:
            raise ValueError("label_weight=0 leaves nothing to learn from; it is for distillation (distill_from)")
        if self.distill_from and self.is_denoiser:
            raise ValueError("distill_from is for keypoint networks, not the denoising model")
        if self.distill_from and self.distill_flip and self.scheme().flip is None:
            raise ValueError("distill_flip needs a keypoint scheme with a mirror (flip); set distill_flip=false")
        if has_partial_labels(self.data, self.num_keypoints) and (self.is_denoiser or self.scheme() != FACE_68):
            raise ValueError("data.extra_train: MTFL's faces are partial labels for the 68-point iBUG scheme "
                             "of a keypoint network, not for the denoising model or another scheme")
        if self.time_budget_minutes is not None:
            _number("time_budget_minutes", self.time_budget_minutes, 0.0, low_inclusive=False)
        if isinstance(self.visualize_every, bool) or not isinstance(self.visualize_every, int) \
                or self.visualize_every < 0:
            raise ValueError(f"visualize_every={self.visualize_every!r} must be a whole number of epochs (0: never)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an integer")
        if isinstance(self.n_corrupt, bool) or not isinstance(self.n_corrupt, int) or self.n_corrupt < 0:
            raise ValueError(f"n_corrupt={self.n_corrupt!r} must be a non-negative integer")

    @property
    def is_denoiser(self) -> bool:
        return get_preset(self.model).is_denoiser

    def model_config(self) -> ModelConfig | DenoiserConfig:
        """The network of preset ``model`` with ``model_options`` (and the scheme's point count) applied."""
        options = dict(self.model_options)
        if self.keypoints is not None:
            options["num_keypoints"] = self.keypoints["num_keypoints"]
        return get_preset(self.model).model.replace(**options)

    def scheme(self) -> KeypointScheme:
        """The keypoint scheme of the run (``keypoints``, else the paper's for the point count)."""
        return as_scheme(self.keypoints, self.num_keypoints)

    def resolved_readout(self) -> str:
        """``readout``, or the preset's when it is ``None``."""
        return self.readout or get_preset(self.model).readout

    def working_readout(self) -> str:
        """The read-out of the in-training NME (best-epoch selection) and of the saved model until
        ``"auto"`` picks one after training: `resolved_readout`, the preset's for ``"auto"``."""
        chosen = self.resolved_readout()
        return get_preset(self.model).readout if chosen == "auto" else chosen

    def loss(self, reduction: str = "sum_over_batch_size") -> PixelNLL:
        """The run's training loss: its target, coordinate term and (with teachers) distillation term."""
        return PixelNLL(self.loss_target, reduction=reduction, coordinate_weight=self.coordinate_loss,
                        distill_weight=self.distill_weight if self.distill_from else 0.0,
                        groups=GROUPS_68 if has_partial_labels(self.data, self.num_keypoints) else (),
                        label_weight=self.label_weight, target_sigma=self.target_sigma,
                        point_weights=self.point_weight_vector())

    def point_weight_vector(self) -> tuple[float, ...]:
        """``point_weights`` as one weight per keypoint (empty: all weigh 1); a ValueError names a key that
        is neither a region nor a point index, or a weight that is not a number >= 0."""
        if self.point_weights is None:
            return ()
        if not isinstance(self.point_weights, dict) or not self.point_weights:
            raise ValueError(f"point_weights={self.point_weights!r} must map regions or point indices to weights, "
                             f"e.g. {{\"jaw\": 2}}")
        k = self.num_keypoints
        regions = REGIONS_68 if k == 68 else {}
        weights = [1.0] * k
        for key, value in self.point_weights.items():
            if key in regions:
                points = regions[key]
            elif str(key).isdigit() and int(key) < k:
                points = (int(key),)
            else:
                named = f"a region ({', '.join(regions)}) or " if regions else ""
                raise ValueError(f"point_weights key {key!r} is not {named}a point index 0-{k - 1}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"point_weights[{key!r}]={value!r} must be a number >= 0")
            for i in points:
                weights[i] = float(value)
        return tuple(weights)

    @property
    def num_keypoints(self) -> int:
        return self.model_config().num_keypoints

    def updates_per_epoch(self, train_faces: int) -> int:
        """``steps_per_epoch``, else the batches that cover ``train_faces`` once (the last one partial)."""
        return self.steps_per_epoch or math.ceil(train_faces / self.batch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a training configuration is a JSON object, got {type(d).__name__}")
        if "mixed_precision" in d and "precision" not in d:
            d = {**d, "precision": _OLD_MIXED.get(d["mixed_precision"], d["mixed_precision"])}
            d.pop("mixed_precision")
        check_fields(cls, d, "training option")
        return cls(**d)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(pathlib.Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def with_overrides(self, overrides: dict[str, object]) -> "TrainConfig":
        """Apply dotted-key overrides, e.g. ``{"epochs": 5, "augment.rotation": 40, "model_options.branches": 5}``."""
        d = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            node = d
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise ValueError(f"unknown option {key!r}: {p!r} is not a group of options")
                node = node[p]
            if parts[0] != "model_options" and parts[-1] not in node:
                raise ValueError(f"unknown option {key!r}; valid here: {sorted(node)}")
            node[parts[-1]] = value
        return TrainConfig.from_dict(d)


def flat_options(d: dict, prefix: str = "") -> dict:
    """A nested options dict as dotted keys (``{"data": {"root": ...}}`` -> ``{"data.root": ...}``)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and key != "keypoints":
            out.update(flat_options(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(saved: TrainConfig, new: TrainConfig) -> tuple[dict, dict]:
    """What a resume would change in the run of ``saved``: (safe, refused), each dotted key -> (saved
    value, new value); safe ones are `RESUME_SAFE`, `RESUME_IGNORED` are left out."""
    old, now = flat_options(saved.to_dict()), flat_options(new.to_dict())
    differ = {k: (old.get(k), now.get(k)) for k in sorted(set(old) | set(now))
              if old.get(k) != now.get(k) and k not in RESUME_IGNORED}
    safe = {k: v for k, v in differ.items() if k in RESUME_SAFE}
    return safe, {k: v for k, v in differ.items() if k not in safe}


def describe_changes(changes: dict, limit: int = 6) -> str:
    """``key old -> new, ...`` of `resume_changes`, the first ``limit`` of them."""
    text = ", ".join(f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in list(changes.items())[:limit])
    return text + (f" and {len(changes) - limit} more" if len(changes) > limit else "")


def check_model_spec(spec: str, what: str) -> None:
    """A ValueError naming ``what`` unless ``spec`` is an existing `.keras` file or a shipped model name."""
    path = pathlib.Path(spec)
    if path.suffix == ".keras" or path.exists():
        if not path.is_file():
            raise ValueError(f"{what}={spec!r}: model file not found")
        return
    try:
        preset = get_preset(spec)
    except ValueError as exc:
        raise ValueError(f"{what}={spec!r}: neither a .keras file nor a shipped model ({exc})") from None
    if not preset.weights:
        raise ValueError(f"{what}={spec!r} is a preset without trained weights; name a shipped model or a .keras file")


def preset_train_config(model: str, **overrides) -> TrainConfig:
    """The training configuration of preset ``model`` (its recipe) with dotted-key ``overrides`` applied."""
    return TrainConfig(model=model).with_overrides({**get_preset(model).recipe, **overrides})


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is read as JSON when it parses, else a string."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
