"""Release tooling: pick the best trained 68-point and 5-point models and ship them in rcn_keras/weights.

Candidates are the finished rows of `rcn experiment real-300w` plus any extra run folders (``--extra``).
Each candidate is scored on its **validation** split with every read-out; the lowest validation NME
picks the model and its read-out (never a test set). The 5-point winner is then scored once on AFW.
Writes ``rcn_keras/weights/<name>.keras`` (a float32 `Landmarker` with the picked read-out, no
optimizer state), ``<name>.tflite`` (the same model as a TFLite file of batch 1, float32 unless its card says
int8, which `rcn predict` runs with LiteRT without importing TensorFlow), ``<name>.json`` (model card data) and
``MODEL_CARD.md``. ``--tflite-only`` re-writes the TFLite files of the shipped models as they are (``--twin int8``:
as int8 files from now on); ``--refresh-prior`` gives the shipped models' shape priors the library's present
defaults (`ShapePrior.leading`) or ``--prior MODES:ROUNDSxSTEPS``, and a model without one a prior of its training
faces; ``--calibrate`` gives them label offsets measured on their training faces
(`rcn_keras.models.label_offsets`). The preset of the same name in `rcn_keras.presets` must then say the same
read-out (a test checks it).

    python tools/ship_models.py --results runs/experiments/real-300w --extra runs/real_v2_68
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import print_table  # noqa: E402
from shape_prior_cost import grid_entry  # noqa: E402

from rcn_keras.presets import get_preset  # noqa: E402

NAMES = ("rcn-300w", "rcn-300w-hr", "rcn-300w-fast", "rcn-afw5", "sumnet-afw5", "rcn-mtfl")
SHARED_300W = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
SHARED_MTFL = SHARED_300W.parent / "mtfl"


def shipped_name(preset: str, k: int, source: str = "300w", model_options: dict | None = None) -> str:
    """The shipped model a run of ``preset`` (with its ``model_options``) with ``k`` keypoints on data
    ``source`` competes for."""
    model = get_preset(preset).model.replace(**(model_options or {}))
    if k == 5:
        if model.family == "sumnet":
            return "sumnet-afw5"
        return "rcn-mtfl" if source == "mtfl" else "rcn-afw5"
    if model.layout == "fast":
        return "rcn-300w-fast"
    return "rcn-300w-hr" if model.input_size != get_preset("rcn-300w").model.input_size else "rcn-300w"


def network_preset(config) -> tuple[str, dict]:
    """The preset and model options of a run's network: a run started from a shipped model by name (``rcn train
    --init rcn-300w-fast``, whose ``model`` is that name) has its card's, with the run's options on top."""
    from rcn_keras.presets import list_presets

    if config.model in list_presets(shipped=True):
        card = get_preset(config.model).card() or {}
        if "preset" in card:
            return card["preset"], {**card.get("model_options", {}), **config.model_options}
    return config.model, dict(config.model_options)


def competes_for(config) -> str:
    """`shipped_name` of a run's ``config`` (its preset, point count, data source and model options)."""
    return shipped_name(config.model, config.num_keypoints, config.data.source, config.model_options)


RECIPES = {"rcn_300w_real": "the real-face recipe (bfloat16, Adam 1e-3 with warm-up and cosine decay, flips, rotation 30, "
                            "photometric jitter, bilinear sub-pixel targets, read-out picked on validation)",
           "rcn_300w_refine": "stage 2 of the real-face recipe: the rcn_300w_real model fine-tuned without occlusion "
                              "and with rotation 15 (Adam 5e-4, warm-up and cosine decay, flips, photometric jitter, "
                              "bilinear targets)",
           "rcn_mtfl_real": "the real-face recipe (as rcn_300w_real)",
           "rcn_mtfl": "the paper's recipe (the authors' README: Adadelta lr 1.0, rho 0.95, batch 64, rotation +-20, "
                       "scale and translation +-10 %, one 20-50 px black block per face, arg-max read-out while "
                       "training, best epoch on validation), then the read-out picked on validation",
           "sumnet_mtfl_real": "the real-face recipe of rcn-afw5 with the same data, epochs and time budget, on "
                               "SumNet: shipped small, for the SumNet vs RCN figures (notebook 02), not for use",
           "rcn_300w_fast": "the real-face recipe (as rcn_300w_real, batch 32, 300 epochs) on the fast layout "
                            "(depthwise-separable convs with batch normalisation, the K maps made at 40x40 and "
                            "upsampled to 80x80 unless upsample_maps=False)"}
LICENCE = ("Trained on the 300W annotations of AFW and HELEN (ibug.doc.ic.ac.uk/resources/300-W), which are "
           "released for research use only: so are these weights. Not for commercial use.")
LICENCES = {"mtfl": "Trained on MTFL (mmlab.ie.cuhk.edu.hk/projects/TCDCN.html), provided by its authors for research "
                    "purposes only: so are these weights. Not for commercial use."}


def licence_for(data) -> str:
    """The terms of every dataset a run learned from: its source and the faces ``extra_train`` added (an MTFL
    folder or a keypoint CSV of MTFL's faces: pseudo-labels)."""
    sources = [data.source] + ["mtfl" for extra in getattr(data, "extra_train", None) or ()
                               if "mtfl" in str(extra).lower()]
    texts = [LICENCES.get(source, LICENCE) for source in dict.fromkeys(sources)]
    return " ".join(dict.fromkeys(texts))


# What a shipped model is for, where it is not simply the best of its kind.
PURPOSES = {"rcn-afw5": "RCN's half of the SumNet vs RCN figures (notebook 02), trained exactly as sumnet-afw5 on "
                        "HELEN; for 5 points on photos use rcn-mtfl",
            "sumnet-afw5": "SumNet's half of the SumNet vs RCN figures (notebook 02); not for use",
            "rcn-300w-hr": "the most accurate 68-point model, for when accuracy matters more than time: about 1.3x "
                           "rcn-300w's time per face in Keras and 1.5x in LiteRT (benchmarks/results/hr_speed.md); "
                           "its 160x160 crop sees a face at about twice the pixels"}


def splits_of(config):
    """The train / validation / test faces of a run or preset's ``config``, cropped for its network's input
    (a 160x160 network's faces cut at twice the pixels, as in its training)."""
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import load_splits

    return load_splits(config.data, config.num_keypoints, crop_size=crop_side(config.model_config().input_size))


def run_folders(results: pathlib.Path, extra: list[str]) -> list[pathlib.Path]:
    found = [p.parent for p in sorted(results.glob("*/summary.json"))] if results.is_dir() else []
    return found + [pathlib.Path(e) for e in extra]


def score_candidate(folder: pathlib.Path, splits_cache: dict, shape_prior: bool = False,
                    network_alone: bool = False) -> list[dict]:
    """Validation (and test) NME of one run's best model under each read-out; with ``shape_prior``, also
    with a `ShapePrior` fitted to the run's training faces (the model's own prior, if saved, counts too);
    ``network_alone``: only without a prior, not even the one it saved (for speed)."""
    from rcn_keras.app.training.config import TrainConfig
    from rcn_keras.evaluation.report import evaluate_predictions, headline_rows, predict_faceset
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.models.config import READOUTS

    config = TrainConfig.load(folder / "config.json")
    key = (json.dumps(config.to_dict()["data"], sort_keys=True) + str(config.num_keypoints)
           + str(config.model_config().input_size))
    if key not in splits_cache:
        splits_cache[key] = splits_of(config)
    splits = splits_cache[key]
    model = load_landmarker(folder / "best.keras")
    priors = [None] if network_alone else [model.shape_prior]
    if shape_prior and not network_alone and model.shape_prior is None:
        from rcn_keras.app.training.fit import training_shapes
        from rcn_keras.models.shape_prior import ShapePrior

        priors = [None, ShapePrior.from_shapes(training_shapes(splits.train))]
    state = json.loads((folder / "state" / "state.json").read_text())
    rows = []
    for prior in priors:
        # with a prior every read-out gives the same points: it is scored with the run's own
        for readout in READOUTS if prior is None else (model.readout,):
            pred, gt, _ = predict_faceset(model.with_shape_prior(prior), splits.validation, 64, readout)
            res = evaluate_predictions(pred, gt, splits.validation)
            allrows = headline_rows(res["rows"])
            rows.append({"run": str(folder), "model": config.model, "readout": readout, "config": config,
                         "source": config.data.source,
                         "params": model.backbone.count_params(), "shape_prior": prior,
                         "k": config.num_keypoints, "splits": splits, "epochs": state["epoch"],
                         "train_minutes": state.get("train_seconds", 0.0) / 60.0,
                         "val_nme": allrows[0]["nme"], "validation": allrows, "regions": res.get("regions")})
    return rows


def earlier_stages(config, run: str | None = None) -> list[dict]:
    """The runs a fine-tuned model (``config``, of the run folder ``run``) started from (``init_from`` a
    run's ``best.keras``, or a shipped model, whose card lists its own stages), oldest first: preset,
    epochs and minutes of each, so a model card counts the whole training budget. Re-shipping the run
    a shipped model came from takes that card's earlier stages, not the card itself as a stage."""
    from rcn_keras.app.training.config import TrainConfig
    from rcn_keras.presets import list_presets

    stages = []
    while config.init_from:
        if config.init_from in list_presets(shipped=True):
            card = get_preset(config.init_from).card() or {}
            if run is not None and card.get("source_run") == run:
                return card.get("stages", []) + stages
            shipped = {"run": card.get("source_run", config.init_from), "preset": card.get("preset", config.init_from),
                       "epochs": card.get("epochs", 0), "train_minutes": card.get("train_minutes") or 0.0}
            return card.get("stages", []) + [shipped] + stages
        folder = pathlib.Path(config.init_from).parent
        if not folder.joinpath("config.json").is_file():
            break
        config = TrainConfig.load(folder / "config.json")
        state = json.loads((folder / "state" / "state.json").read_text())
        stages.insert(0, {"run": str(folder), "preset": network_preset(config)[0], "epochs": state["epoch"],
                          "train_minutes": state.get("train_seconds", 0.0) / 60.0})
    return stages


def test_rows(folder: str, readout: str, faces, shape_prior=None) -> list[dict]:
    """The whole-set rows of a run's best model (with ``readout`` and ``shape_prior``) on test ``faces``."""
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(pathlib.Path(folder) / "best.keras")
    model = model.with_shape_prior(shape_prior) if shape_prior is not None else model
    return whole_set_rows(model, faces, readout)


def whole_set_rows(model, faces, readout: str | None = None) -> list[dict]:
    """The whole-set rows (every normaliser) of ``model`` (with ``readout``, else its own) on ``faces``."""
    from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset

    pred, gt, _ = predict_faceset(model, faces, 64, readout)
    return [r for r in evaluate_predictions(pred, gt, faces)["rows"] if r["subset"] == "all"]


def data_text(data, splits) -> str:
    """The training data of a model card, in words."""
    if data.source == "mtfl":
        return (f"MTFL training.txt ({len(splits.train)} training faces; validation = the last "
                f"{len(splits.validation)} of the seed-7345 permutation, as the paper)")
    from rcn_keras.data.sources import extra_source

    named = [("MTFL training.txt, its 5 points as partial labels" if extra_source(p) == "mtfl" else pathlib.Path(p).name)
             for p in data.extra_train]
    extra = f", with the extra training faces of {'; '.join(named)} (loss weight {data.extra_weight})" if named else ""
    return (f"300W {' + '.join(data.train_subsets)} ({len(splits.train)} training faces{extra}; validation = the "
            f"seed-7345 {data.validation:.0%} split, {len(splits.validation)} faces)")


def last_stage_text(config) -> str:
    """The recipe of a fine-tuning run (``init_from``) in words: what its preset's recipe does not say."""
    a = config.augment
    return (f"{config.epochs} epochs from {config.init_from}, {config.optimizer} {config.learning_rate:g} "
            f"({config.lr_schedule}, {config.warmup_epochs} warm-up), rotation {a.rotation:g}, occlusion "
            f"{'on' if a.occlusion else 'off'}, batch {config.batch_size}")


def card_markdown(cards: list[dict]) -> str:
    from rcn_keras.evaluation.report import headline_rows

    lines = ["# Shipped models", "",
             "Loadable by name: `rcn predict face.jpg --model rcn-300w`, `rcn_keras.Landmarker.from_preset(\"rcn-afw5\")`.",
             "Made by `tools/ship_models.py` from training runs; picked by",
             "validation NME (model and read-out), never by a test set.", "", f"**Licence note.** {LICENCE} "
             f"{LICENCES['mtfl']}", ""]
    for c in cards:
        options = ", ".join(f"{k}={v}" for k, v in c["model_options"].items())
        side = get_preset(c["preset"]).model.replace(**c["model_options"]).input_size
        minutes = f"{c['train_minutes']:.0f} min" if c["train_minutes"] else c.get("budget_note", "time not recorded")
        before = "".join(f"{s['epochs']} epochs of `{s['preset']}` ({s['train_minutes']:.0f} min), then "
                         for s in c.get("stages", []))
        distilled = (f"; also distilled from {', '.join(c['distilled_from'])} (weight {c['distill_weight']}"
                     f"{', flip-averaged' if c.get('distill_flip') else ''}"
                     f"{'; true labels weight ' + str(c['label_weight']) if c.get('label_weight', 1.0) != 1.0 else ''})"
                     if c.get("distilled_from") else "")
        lines += [f"## {c['name']}", "",
                  f"* Network: preset `{c['preset']}`{' with ' + options if options else ''} ({c['params']:,} parameters, {c['keypoints']} keypoints, "
                  f"{side}x{side} grey input), read-out `{c['readout']}`.",
                  f"* Data: {c['data']}.",
                  f"* Terms: {c['licence']}",
                  f"* Budget: {before}{c['epochs']} epochs{' of `' + c['preset'] + '`' if before else ''}, {minutes} "
                  f"of training on a 2-core CPU "
                  f"(optimizer {c['optimizer']}, batch {c['batch_size']}).",
                  f"* Recipe: {RECIPES.get(c['preset'], 'see the preset in rcn_keras/presets.py')}"
                  f"{'; the last stage: ' + c['last_stage'] if c.get('last_stage') else ''}{distilled}."]
        if c.get("shape_prior"):
            p = c["shape_prior"]
            fit = f"; {p['rounds']} alignment rounds x {p['steps']} conjugate-gradient steps" if "rounds" in p else ""
            lines.append(f"* Shape prior (`rcn_keras.models.shape_prior`): {p['modes']} PCA modes of {p['shapes']}' "
                         f"keypoints; each point's softmax (logits x {p['temperature']}) gives a mean and covariance, "
                         f"the keypoints are the most probable shape (prior strength {p['strength']}{fit}).")
        if c.get("tflite", "float32") != "float32":
            lines.append(f"* TFLite twin (`{c['name']}.tflite`, what `rcn predict` runs with LiteRT): {c['tflite']}, "
                         f"calibrated on its training faces (`rcn_keras.export`): validation NME "
                         f"{c['tflite_nme']:.2f} % against the float32 Keras model's "
                         f"{c['validation'][0]['nme']:.2f} %.")
        if c.get("label_offsets"):
            o = c["label_offsets"]
            lines.append(f"* Label offsets (`rcn_keras.models.label_offsets`): each point's mean error on the "
                         f"{o['faces']} training faces is added to it (on average {o['mean_px'][0]:+.2f} map pixels "
                         f"in x, {o['mean_px'][1]:+.2f} in y: the labels' convention; validation NME without them "
                         f"{o['validation_before'][0]['nme']:.2f} %).")
        lines += [f"* Validation ({r['faces']} faces): NME {r['nme']:.2f} % ({r['normaliser']}), "
                  f"FR@8 {r['fr8']:.1f} %, FR@10 {r['fr10']:.1f} %, AUC@8 {r['auc8']:.3f}, AUC@10 {r['auc10']:.3f}."
                  for r in c["validation"]]
        if c.get("validation_regions"):
            r = c["validation_regions"]
            lines.append(f"* Validation per face region (NME %, {c['validation'][0]['normaliser']}): jaw "
                         f"{r['jaw']:.2f} (along its contour {r['jaw along']:.2f}, across {r['jaw across']:.2f}), "
                         f"brows {r['brows']:.2f}, nose {r['nose']:.2f}, eyes {r['eyes']:.2f}, "
                         f"mouth {r['mouth']:.2f}.")
        tests = ([{"set": c["test_set"], "rows": c["test"]}] if c.get("test") else []) + c.get("tests", [])
        for test in tests:
            for t in headline_rows(test["rows"]):
                lines.append(f"* Test {test['set']} ({t['faces']} faces): NME {t['nme']:.2f} % ({t['normaliser']}), "
                             f"FR@10 {t['fr10']:.1f} %, AUC@8 {t['auc8']:.3f}.")
        if c.get("purpose") or c["name"] in PURPOSES:
            lines.append(f"* Purpose: {c.get('purpose') or PURPOSES[c['name']]}.")
        if c["keypoints"] == 68:
            lines.append("* CED on the validation faces beside dlib's: ../../docs/figures/ced.png "
                         "(`python benchmarks/peer_dlib.py`, then `python tools/render_docs.py`).")
        lines += ["* Input: photos (faces found by a detector: `--detector auto`, each detector's box calibrated "
                  "to the training crop), a face box (`--box x,y,w,h`: the tight box of the face's landmarks, "
                  "enlarged 1.3 as in training, or `--box-format DETECTOR` for a detector's box), or a face crop "
                  "(`--detector none`).", ""]
    return "\n".join(lines)


def package_pretrained(model_path: str | os.PathLike, name: str, card: dict, readout: str,
                       weights_dir: str | os.PathLike, shape_prior=None) -> pathlib.Path:
    """Write a trained model as the shipped model ``name``: a float32 `Landmarker` with ``readout``, the
    ``shape_prior`` it was scored with (if any) and no optimizer state (``<name>.keras``), its TFLite twin in the
    format the model it replaces had, and its model card data (``<name>.json``), atomically."""
    from rcn_keras.files import atomic_save_model, atomic_write_bytes
    from rcn_keras.landmarker import load_landmarker

    folder = pathlib.Path(weights_dir)
    model = load_landmarker(model_path).to_float32().with_readout(readout).with_shape_prior(shape_prior)
    atomic_save_model(model, folder / f"{name}.keras")
    old = folder / f"{name}.json"
    twin = json.loads(old.read_text()).get("tflite", "float32") if old.is_file() else "float32"
    card = write_twin(folder / f"{name}.keras", {**card, "readout": readout}, twin=twin)
    atomic_write_bytes(folder / f"{name}.json", json.dumps(card, indent=2).encode())
    return folder / f"{name}.keras"


TWINS = ("float32", "int8")  # the formats of a TFLite twin: its card's "tflite" (float32 when absent)


def write_tflite(keras_path: pathlib.Path, twin: str, root: pathlib.Path = SHARED_300W) -> pathlib.Path:
    """The TFLite twin of a shipped ``.keras`` model (batch 1, its read-out and shape prior) in format ``twin``
    (`TWINS`): float32, or int8 calibrated on its training faces under ``root`` (`rcn_keras.export`)."""
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(keras_path)
    if twin == "float32":
        return model.export(keras_path.with_suffix(".tflite"), "tflite")
    from rcn_keras.app.cli.export import representative_crops

    if not root.is_dir():
        raise SystemExit(f"{keras_path.stem}: its int8 twin is calibrated on its training faces: {root} not found")
    crops = representative_crops("300w", str(root), model.num_keypoints, crop_rule=model.keypoints.crop,
                                 side=model.input_size)
    return model.export(keras_path.with_suffix(".tflite"), "tflite", quantize="int8", representative=crops)


def keras_digest(keras_path: pathlib.Path) -> str:
    """The SHA-256 of a shipped ``.keras`` file: an int8 twin's card names the file it was made from, since its
    int8 keypoints differ from the Keras model's more than a stale twin's would."""
    import hashlib

    return hashlib.sha256(keras_path.read_bytes()).hexdigest()


def write_twin(keras_path: pathlib.Path, card: dict, root: pathlib.Path = SHARED_300W, twin: str | None = None) -> dict:
    """`write_tflite` of a shipped model in format ``twin`` (default: its ``card``'s) and the card saying so: an
    int8 twin's own validation NME (``tflite_nme``), which differs from the float32 Keras model's, and the
    `keras_digest` of the file it was made from (``tflite_of``)."""
    twin = twin or card.get("tflite", "float32")
    path = write_tflite(keras_path, twin, root)
    card = {k: v for k, v in card.items() if k not in ("tflite", "tflite_nme", "tflite_of")}
    if twin == "float32":
        return card
    import numpy as np

    from rcn_keras.app.training import preset_train_config
    from rcn_keras.data.pipeline import make_dataset
    from rcn_keras.evaluation.report import headline_nme
    from rcn_keras.runtimes import ExportedLandmarker

    val = splits_of(preset_train_config(card["name"], **{"data.root": str(root)})).validation
    runner = ExportedLandmarker(path)
    batches = [(runner(x.numpy())["keypoints"], y.numpy()[..., :2])
               for x, y in make_dataset(val, "test", 64, out_size=runner.input_size)]
    pred, gt = (np.concatenate(parts) for parts in zip(*batches))
    return {**card, "tflite": twin, "tflite_nme": headline_nme(pred, gt, val), "tflite_of": keras_digest(keras_path)}


def set_twin(name: str, weights_dir: pathlib.Path, twin: str | None = None, root: pathlib.Path = SHARED_300W) -> dict:
    """Shipped model ``name``'s TFLite twin re-written in format ``twin`` (`TWINS`; default: its card's), which its
    card records. Returns the card."""
    from rcn_keras.files import atomic_write_bytes

    path = weights_dir / f"{name}.json"
    card = write_twin(path.with_suffix(".keras"), json.loads(path.read_text()), root, twin)
    atomic_write_bytes(path, json.dumps(card, indent=2).encode())
    return card


REFRESH_TOLERANCE = 0.02  # validation NME points a refreshed (cheaper) prior may lose and still ship


def refresh_prior(name: str, weights_dir: pathlib.Path, root: pathlib.Path = SHARED_300W,
                  target: tuple[int | None, int, int] | None = None) -> dict | None:
    """Shipped model ``name`` with its shape prior cut to ``target`` (modes, alignment rounds, conjugate-gradient
    steps; default the present defaults: `ShapePrior.leading`), both scored on its validation split; the model,
    its TFLite twin and card are re-written when the new prior loses at most `REFRESH_TOLERANCE` points. A model
    without a prior gets one fitted to its training faces' keypoints when ``target`` is given and it lowers the
    validation NME. Returns the card."""
    from rcn_keras.app.training import preset_train_config
    from rcn_keras.evaluation.report import evaluate_predictions, headline_rows, predict_faceset
    from rcn_keras.files import atomic_save_model, atomic_write_bytes
    from rcn_keras.landmarker import load_landmarker

    path = weights_dir / f"{name}.keras"
    model = load_landmarker(path)
    old = model.shape_prior
    if old is None and target is None:
        print(f"{name}: no shape prior: left as it is")
        return None
    config = preset_train_config(name, **{"data.root": str(root)})
    splits = splits_of(config)
    val = splits.validation
    if old is None:
        from rcn_keras.app.training.fit import training_shapes
        from rcn_keras.models.shape_prior import ShapePrior

        old_or_fitted = ShapePrior.from_shapes(training_shapes(splits.train))
    else:
        old_or_fitted = old
    if target is None:
        new = old_or_fitted.leading()
    else:  # no MODES in the target: all the prior's
        new = old_or_fitted.leading(target[0] or old_or_fitted.num_modes, target[1], target[2])
    scores, regions = {}, {}
    for label, prior in (("saved", old), ("refreshed", new)):
        pred, gt, _ = predict_faceset(model.with_shape_prior(prior), val, 64)
        result = evaluate_predictions(pred, gt, val)
        scores[label], regions[label] = headline_rows(result["rows"]), result["regions"]
    saved = f"prior {old.num_modes} modes x {old.iterations} rounds x {old.steps} steps" if old else "no prior"
    print(f"{name}: saved {saved} {scores['saved'][0]['nme']:.3f} %, refreshed {new.num_modes} x {new.iterations} x "
          f"{new.steps} {scores['refreshed'][0]['nme']:.3f} % (validation, {len(val)} faces)")
    loss = scores["refreshed"][0]["nme"] - scores["saved"][0]["nme"]
    if (old and loss > REFRESH_TOLERANCE) or (not old and loss >= 0):
        print(f"{name}: the new prior {f'loses more than {REFRESH_TOLERANCE}' if old else 'gains no'} "
              f"points: left as it is")
        return None
    card = json.loads(path.with_suffix(".json").read_text())
    card["shape_prior"] = {**card.get("shape_prior", {"temperature": new.temperature, "strength": new.strength,
                                                       "shapes": f"the {len(splits.train)} training faces"}),
                           "modes": new.num_modes, "rounds": new.iterations, "steps": new.steps}
    card["validation"] = scores["refreshed"]
    card["validation_regions"] = regions["refreshed"]
    atomic_save_model(model.with_shape_prior(new), path)
    card = write_twin(path, card, root)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(card, indent=2).encode())
    return card


def refresh_regions(name: str, weights_dir: pathlib.Path, root: pathlib.Path = SHARED_300W) -> dict | None:
    """Shipped 68-point model ``name``'s card with its validation NME per face region (as it ships: with its
    prior if it has one), the weights untouched. Returns the card (``None`` for another point count)."""
    from rcn_keras.app.training import preset_train_config
    from rcn_keras.evaluation.report import headline_regions, predict_faceset
    from rcn_keras.files import atomic_write_bytes
    from rcn_keras.landmarker import load_landmarker

    path = weights_dir / f"{name}.keras"
    card = json.loads(path.with_suffix(".json").read_text())
    if card["keypoints"] != 68:
        return None
    config = preset_train_config(name, **{"data.root": str(root)})
    val = splits_of(config).validation
    pred, gt, _ = predict_faceset(load_landmarker(path), val, 64)
    card["validation_regions"] = headline_regions(pred, gt, val)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(card, indent=2).encode())
    print(f"{name}: " + ", ".join(f"{k} {v:.2f} %" for k, v in card["validation_regions"].items()))
    return card


def calibrate(name: str, weights_dir: pathlib.Path) -> dict | None:
    """Shipped model ``name`` with `LabelOffsets` measured on its training faces, scored without and with them
    on its validation split; when they lower it, the model, its TFLite twin and its card (validation, regions and
    the test rows it lists, re-scored as it now ships) are re-written. Returns the card."""
    from rcn_keras.app.training import preset_train_config
    from rcn_keras.evaluation.calibration import measure_label_offsets
    from rcn_keras.evaluation.report import evaluate_predictions, headline_rows, predict_faceset
    from rcn_keras.files import atomic_save_model, atomic_write_bytes
    from rcn_keras.landmarker import load_landmarker

    path = weights_dir / f"{name}.keras"
    card = json.loads(path.with_suffix(".json").read_text())
    config = preset_train_config(name, **{"data.root": str(SHARED_300W)})
    if config.data.source == "mtfl":
        config = preset_train_config(name, **{"data.root": str(SHARED_MTFL)})
    if not pathlib.Path(config.data.root).is_dir():
        print(f"{name}: {config.data.root} not found: left as it is")
        return None
    splits = splits_of(config)
    model = load_landmarker(path).with_label_offsets(None)
    offsets = measure_label_offsets(model, splits.train)
    calibrated = model.with_label_offsets(offsets)
    scores = []  # without and with the offsets: one prediction each gives the rows and the regions
    for m in (model, calibrated):
        pred, gt, _ = predict_faceset(m, splits.validation, 64)
        scores.append(evaluate_predictions(pred, gt, splits.validation))
    before, after = (headline_rows(result["rows"]) for result in scores)
    print(f"{name}: offsets (mean over points, 80x80 map pixels) plain {offsets.plain.mean(0) * 80} flip "
          f"{None if offsets.flip is None else offsets.flip.mean(0) * 80}; validation NME "
          f"{before[0]['nme']:.3f} -> {after[0]['nme']:.3f} % ({len(splits.validation)} faces)")
    if after[0]["nme"] >= before[0]["nme"]:
        print(f"{name}: the offsets do not lower the validation NME: left as it is")
        return None
    card["validation"] = after
    card["label_offsets"] = {"faces": len(splits.train), "mean_px": [float(v) for v in offsets.plain.mean(0) * 80],
                             "validation_before": before}
    if card["keypoints"] == 68:
        card["validation_regions"] = scores[1]["regions"]
    if card.get("test") and splits.test is not None:
        card["test"] = whole_set_rows(calibrated, splits.test)
    for test in card.get("tests", []):
        if test["set"].startswith("AFW") and (SHARED_300W / "afw").is_dir():
            from rcn_keras.data.sources import load_faces

            test["rows"] = whole_set_rows(calibrated, load_faces("300w", str(SHARED_300W), 5, subsets=("afw",)))
    atomic_save_model(calibrated, path)
    card = write_twin(path, card)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(card, indent=2).encode())
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="runs/experiments/real-300w")
    parser.add_argument("--extra", nargs="*", default=[], help="more run folders to consider")
    parser.add_argument("--weights-dir", help="where to write (default rcn_keras/weights)")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES), help="shipped models to (re)make")
    parser.add_argument("--shape-prior", action="store_true",
                        help="also score each candidate with a shape prior of its training faces")
    parser.add_argument("--no-shape-prior", action="store_true",
                        help="score and ship each candidate's network alone, without the prior its run saved "
                             "(the fast model: the prior costs more time per face than the network)")
    parser.add_argument("--budget-note", action="append", default=[], metavar="RUN=TEXT",
                        help="training time of a run that did not record it, e.g. 'runs/x=about 53 min'")
    parser.add_argument("--tflite-only", action="store_true",
                        help="only re-write the TFLite twins of the shipped models (--only) from their .keras files")
    parser.add_argument("--twin", choices=TWINS,
                        help="with --tflite-only: write the twins in this format from now on (their cards record it; "
                             "default: the format each card names)")
    parser.add_argument("--refresh-prior", action="store_true",
                        help="only give the shipped models' (--only) shape priors the present defaults (fewer modes, "
                             "rounds, steps), where that costs at most REFRESH_TOLERANCE validation points")
    parser.add_argument("--prior", type=grid_entry, metavar="MODES:ROUNDSxSTEPS",
                        help="with --refresh-prior: these instead of the defaults, e.g. 32:3x4; a model without a "
                             "prior gets one of its training faces when it lowers the validation NME")
    parser.add_argument("--calibrate", action="store_true",
                        help="only give the shipped models (--only) label offsets measured on their training faces, "
                             "where they lower the validation NME (rcn_keras.models.label_offsets)")
    parser.add_argument("--refresh-regions", action="store_true",
                        help="only score the shipped 68-point models' (--only) validation NME per face region into "
                             "their cards")
    args = parser.parse_args()
    if args.shape_prior and args.no_shape_prior:
        parser.error("--shape-prior and --no-shape-prior exclude each other")

    from rcn_keras.presets import WEIGHTS_DIR

    if args.twin and not args.tflite_only:
        parser.error("--twin goes with --tflite-only")
    if args.prior and not args.refresh_prior:
        parser.error("--prior goes with --refresh-prior")
    weights_dir = pathlib.Path(args.weights_dir) if args.weights_dir else WEIGHTS_DIR
    if args.tflite_only:
        twins = [set_twin(name, weights_dir, args.twin) for name in args.only]
        for card in twins:
            path = weights_dir / f"{card['name']}.tflite"
            print(f"{card['name']}: {path} ({path.stat().st_size / 1e6:.1f} MB, {card.get('tflite', 'float32')})")
        write_cards(weights_dir, twins)
        return

    if args.refresh_prior or args.refresh_regions or args.calibrate:
        if args.refresh_prior:
            refresh = lambda name, folder: refresh_prior(name, folder, target=args.prior)  # noqa: E731
        else:
            refresh = calibrate if args.calibrate else refresh_regions
        refreshed = [card for name in args.only if (card := refresh(name, weights_dir))]
        if refreshed:
            write_cards(weights_dir, refreshed)
        return

    from rcn_keras.app.training.config import TrainConfig

    cache: dict = {}
    candidates = [row for folder in run_folders(pathlib.Path(args.results), args.extra)
                  if competes_for(TrainConfig.load(folder / "config.json")) in args.only
                  for row in score_candidate(folder, cache, args.shape_prior, network_alone=args.no_shape_prior)]
    print_table([{**{k: r[k] for k in ("run", "model", "readout", "epochs", "val_nme")},
                  "shape_prior": r["shape_prior"] is not None} for r in candidates],
                ["run", "model", "readout", "shape_prior", "epochs", "val_nme"])
    cards = []
    for name in args.only:
        pool = [r for r in candidates if competes_for(r["config"]) == name]
        if not pool:
            print(f"no candidate for {name}: not written")
            continue
        k = pool[0]["k"]
        best = min(pool, key=lambda r: r["val_nme"])
        cfg = best["config"]
        data = cfg.data
        preset, options = network_preset(cfg)
        card = {"name": name, "preset": preset, "model_options": options, "keypoints": k,
                "readout": best["readout"], "epochs": best["epochs"], "train_minutes": best["train_minutes"],
                "optimizer": cfg.optimizer, "batch_size": cfg.batch_size, "source_run": best["run"],
                "data": data_text(data, best["splits"]), "source": data.source,
                "validation": best["validation"], "licence": licence_for(data)}
        if best.get("regions"):
            card["validation_regions"] = best["regions"]
        if data.source == "300w":  # the 300W subsets it learned from and was tested on (not MTFL's)
            card.update(train_subsets=list(data.train_subsets), test_subsets=list(data.test_subsets))
        if name in PURPOSES:
            card["purpose"] = PURPOSES[name]
        if best["shape_prior"] is not None:
            card["shape_prior"] = {"modes": best["shape_prior"].num_modes,
                                   "temperature": best["shape_prior"].temperature,
                                   "strength": best["shape_prior"].strength,
                                   "shapes": f"the {len(best['splits'].train)} training faces"}
        if cfg.init_from:
            card["last_stage"] = last_stage_text(cfg)
        if cfg.distill_from:
            card.update(distilled_from=list(cfg.distill_from), distill_weight=cfg.distill_weight,
                        distill_flip=cfg.distill_flip, label_weight=cfg.label_weight)
        stages = earlier_stages(cfg, best["run"])
        if stages:
            card["stages"] = stages
        notes = dict(n.split("=", 1) for n in args.budget_note)
        if best["run"] in notes:
            card["budget_note"] = notes[best["run"]]
        if best["splits"].test is not None:
            from rcn_keras.app.training.fit import test_set_name

            card["test_set"] = test_set_name(cfg)
            card["test"] = test_rows(best["run"], best["readout"], best["splits"].test, best["shape_prior"])
        if data.source == "mtfl" and (SHARED_300W / "afw").is_dir():  # the paper's second 5-point test set
            from rcn_keras.data.sources import load_faces

            afw = load_faces("300w", str(SHARED_300W), 5, subsets=("afw",))
            card["tests"] = [{"set": "AFW (300W afw, 5 points from the 68)",
                              "rows": test_rows(best["run"], best["readout"], afw, best["shape_prior"])}]
        card["params"] = best["params"]
        path = package_pretrained(pathlib.Path(best["run"]) / "best.keras", name, card, best["readout"], weights_dir,
                                  best["shape_prior"])
        print(f"{name}: {best['run']} ({best['readout']}, validation NME {best['val_nme']:.2f} %) -> {path} "
              f"({path.stat().st_size / 1e6:.1f} MB)")
        cards.append(json.loads(path.with_suffix(".json").read_text()))  # as written: with its twin's format
    write_cards(weights_dir, cards)


def write_cards(weights_dir: pathlib.Path, cards: list[dict]) -> None:
    """MODEL_CARD.md of ``cards`` and of every other shipped model's card as it is."""
    from rcn_keras.files import atomic_write_bytes

    for name in NAMES:  # keep the card of a model not re-made this time
        old = weights_dir / f"{name}.json"
        if old.is_file() and not any(c["name"] == name for c in cards):
            cards.append(json.loads(old.read_text()))
    atomic_write_bytes(weights_dir / "MODEL_CARD.md", card_markdown(sorted(cards, key=lambda c: c["name"])).encode())
    print(f"wrote {weights_dir / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
