"""The one preset registry: every preset is complete and valid data, shipped weights are exactly the
presets that name them, and a training run can be made from every recipe."""

import pathlib
import sys

import pytest

from rcn_keras.app.training.config import preset_train_config
from rcn_keras.models.config import READOUTS, DenoiserConfig, ModelConfig
from rcn_keras.presets import PRESETS, WEIGHTS_DIR, get_preset, list_presets

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))  # tools/ship_models.py


def test_presets_are_valid_data():
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.model.name == name
        assert isinstance(preset.model, (ModelConfig, DenoiserConfig)) and preset.readout in READOUTS
        assert preset.description
        config = preset_train_config(name, output_dir="unused", **{"data.root": "/data"})  # every recipe key is a valid option
        assert config.model_config() == preset.model


def test_shipped_weights_are_the_presets_that_name_them():
    on_disk = sorted(p.name for p in WEIGHTS_DIR.glob("*.keras"))
    assert on_disk == sorted(PRESETS[n].weights for n in list_presets(shipped=True))
    for name in list_presets(shipped=True):
        card = PRESETS[name].card()
        assert card is not None and card["name"] == name and card["readout"] == PRESETS[name].readout
        assert card["keypoints"] == PRESETS[name].num_keypoints
        # 300W subsets are named only on cards of 300W models (an MTFL model learned from none of them)
        assert ("train_subsets" in card) == (card.get("source", "300w") == "300w"), name


def test_lists_and_unknown_names():
    assert set(list_presets(shipped=True)) == {"rcn-300w", "rcn-300w-hr", "rcn-300w-fast", "rcn-afw5", "sumnet-afw5",
                                                 "rcn-mtfl"}
    assert "rcn_mtfl" in list_presets(shipped=False) and "denoiser_300w" in list_presets(denoisers=True)
    with pytest.raises(ValueError, match=r"unknown preset 'rcn_mtf'.*did you mean 'rcn_mtfl'"):
        get_preset("rcn_mtf")
    with pytest.raises(ValueError, match="readout='nearest' is not allowed"):
        PRESETS["rcn_mtfl"].__class__("x", PRESETS["rcn_mtfl"].model, readout="nearest")


def test_model_cards_count_every_training_stage(tmp_path):
    """A run fine-tuned from a run folder or from a shipped model: its card counts the whole budget."""
    import json

    from ship_models import earlier_stages

    shipped = get_preset("rcn-300w").card()
    stage = tmp_path / "stage"
    (stage / "state").mkdir(parents=True)
    first = preset_train_config("rcn_300w_refine", init_from="rcn-300w", output_dir=str(stage))
    (stage / "config.json").write_text(first.to_json())
    (stage / "state" / "state.json").write_text(json.dumps({"epoch": 7, "train_seconds": 120.0}))
    (stage / "best.keras").write_bytes(b"")  # only its folder is read
    assert earlier_stages(first) == shipped.get("stages", []) + [
        {"run": shipped["source_run"], "preset": shipped["preset"], "epochs": shipped["epochs"],
         "train_minutes": shipped["train_minutes"]}]
    second = preset_train_config("rcn_300w_refine", init_from=str(stage / "best.keras"), output_dir="unused")
    assert earlier_stages(second)[-1] == {"run": str(stage), "preset": "rcn_300w_refine", "epochs": 7,
                                          "train_minutes": 2.0}
    assert earlier_stages(second)[:-1] == earlier_stages(first)
    assert earlier_stages(preset_train_config("rcn_300w_refine", output_dir="unused")) == []


def test_a_run_started_from_a_shipped_name_has_that_models_preset_on_its_card():
    """`rcn train --init rcn-300w-fast` names the shipped model as the run's model: its card gives the network's
    preset and options (the fast model's 40x40 maps), with the run's own options on top."""

    from ship_models import network_preset

    card = get_preset("rcn-300w-fast").card()
    assert card["preset"] == "rcn_300w_fast" and card["model_options"] == {"upsample_maps": False}
    run = {"output_dir": "unused", "init_from": "rcn-300w-fast", "data.source": "synthetic"}
    by_name = preset_train_config("rcn-300w-fast", **run)
    assert by_name.model == "rcn-300w-fast"
    assert network_preset(by_name) == ("rcn_300w_fast", {"upsample_maps": False})
    wider = preset_train_config("rcn-300w-fast", model_options={"width": 1.25}, **run)
    assert network_preset(wider) == ("rcn_300w_fast", {"upsample_maps": False, "width": 1.25})
    assert network_preset(preset_train_config("rcn_300w_refine", output_dir="unused")) == ("rcn_300w_refine", {})


def test_model_card_says_what_a_model_was_distilled_from():
    from ship_models import card_markdown

    card = get_preset("rcn-300w").card()
    plain = card_markdown([card])
    assert "distilled" not in plain
    text = card_markdown([{**card, "distilled_from": ["rcn-300w", "runs/b/best.keras"], "distill_weight": 1.0,
                           "distill_flip": True}])
    assert "also distilled from rcn-300w, runs/b/best.keras (weight 1.0, flip-averaged)." in text
    alone = card_markdown([{**card, "distilled_from": ["rcn-300w"], "distill_weight": 1.0, "distill_flip": False,
                            "label_weight": 0.0}])
    assert "also distilled from rcn-300w (weight 1.0; true labels weight 0.0)." in alone


def test_model_card_says_the_recipe_of_a_fine_tuning_stage():
    from ship_models import card_markdown, last_stage_text

    config = preset_train_config("rcn_300w_fast", output_dir="unused", init_from="rcn-300w-fast", epochs=8,
                                 learning_rate=5e-4, warmup_epochs=1, **{"augment.rotation": 15,
                                                                         "augment.occlusion": False})
    stage = last_stage_text(config)
    assert stage == "8 epochs from rcn-300w-fast, adam 0.0005 (cosine, 1 warm-up), rotation 15, occlusion off, batch 32"
    card = get_preset("rcn-300w").card()
    assert "the last stage" not in card_markdown([{k: v for k, v in card.items() if k != "last_stage"}])
    assert f"; the last stage: {stage}." in card_markdown([{**card, "last_stage": stage}])


def test_listed_parameter_counts_are_the_built_networks():
    """`rcn models` reads the counts from rcn_keras/preset_parameters.json: they must match the networks."""
    from rcn_keras.models.denoising import build_denoiser
    from rcn_keras.models.registry import build_model
    from rcn_keras.presets import PRESETS, parameter_counts

    counts = parameter_counts()
    for name in list_presets():
        built = build_denoiser(name) if PRESETS[name].is_denoiser else build_model(name)
        assert counts.get(name) == built.count_params(), f"{name}: update rcn_keras/preset_parameters.json"


def test_rcn_mtfl_evaluates_on_mtfl_lists(tmp_path, capsys):
    """The issue's command, `rcn evaluate --model rcn-mtfl --data mtfl --root DIR --list-file testing.txt`, on
    a list in the published format."""
    from data_fixtures import write_mtfl
    from rcn_keras.app.cli import main as cli

    write_mtfl(tmp_path / "mtfl", 6, "testing.txt")
    assert cli.main(["evaluate", "--model", "rcn-mtfl", "--data", "mtfl", "--root", str(tmp_path / "mtfl"),
                     "--list-file", "testing.txt", "--out", str(tmp_path / "ev")]) == 0
    assert "| all | eye_centres | all points | 6 |" in capsys.readouterr().out


@pytest.mark.slow
def test_rcn_mtfl_scores_its_card_on_the_real_aflw(shared_mtfl, tmp_path):
    import json

    from rcn_keras.app.cli import main as cli

    assert cli.main(["evaluate", "--model", "rcn-mtfl", "--data", "mtfl", "--root", str(shared_mtfl),
                     "--list-file", "testing.txt", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    row = next(r for r in report["results"]["rcn-mtfl"] if r["subset"] == "all" and r["normaliser"] == "eye_centres")
    card = next(r for r in PRESETS["rcn-mtfl"].card()["test"] if r["normaliser"] == "eye_centres")
    assert row["faces"] == 2995 and abs(row["nme"] - card["nme"]) < 0.01


def test_refreshing_a_shipped_prior_rewrites_the_model_its_twin_and_card(shared_300w, tmp_path):
    """`tools/ship_models.py --refresh-prior`: the shipped prior cut to the present defaults, scored on
    the validation faces beside the saved one, written with its TFLite twin and card."""
    import json
    import shutil

    from ship_models import REFRESH_TOLERANCE, refresh_prior

    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.models.shape_prior import DEFAULT_ITERATIONS, DEFAULT_MODES, DEFAULT_STEPS

    for suffix in (".keras", ".json"):
        shutil.copy(WEIGHTS_DIR / f"rcn-300w{suffix}", tmp_path / f"rcn-300w{suffix}")
    before = json.loads((tmp_path / "rcn-300w.json").read_text())
    card = refresh_prior("rcn-300w", tmp_path, shared_300w)
    prior = load_landmarker(tmp_path / "rcn-300w.keras").shape_prior
    assert (prior.num_modes, prior.iterations, prior.steps) == (DEFAULT_MODES, DEFAULT_ITERATIONS, DEFAULT_STEPS)
    assert card == json.loads((tmp_path / "rcn-300w.json").read_text())
    assert card["shape_prior"]["modes"] == DEFAULT_MODES
    assert card["validation"][0]["nme"] <= before["validation"][0]["nme"] + REFRESH_TOLERANCE
    assert (tmp_path / "rcn-300w.tflite").stat().st_size > 0
    # a model without a prior is left as it is (unless a prior is asked for: below)
    shutil.copy(WEIGHTS_DIR / "rcn-afw5.keras", tmp_path / "rcn-afw5.keras")
    assert refresh_prior("rcn-afw5", tmp_path, shared_300w) is None


def test_a_model_without_a_prior_gets_one_and_an_int8_twin_keeps_its_format(shared_300w, tmp_path):
    """`--refresh-prior --prior 32:3x4` fits a prior to the training faces of a model without one and keeps it
    where it lowers the validation NME; `--tflite-only --twin int8` re-writes the twin as an int8 file, which
    the card records and later re-writes of the twin keep."""
    import json
    import shutil

    import numpy as np
    from ship_models import keras_digest, package_pretrained, refresh_prior, set_twin, write_twin

    from rcn_keras.files import atomic_save_model
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.runtimes import tflite_interpreter

    def int8_twin() -> bool:
        interpreter = tflite_interpreter(str(tmp_path / "rcn-300w-fast.tflite"), threads=1)
        return any(t["dtype"] == np.int8 for t in interpreter.get_tensor_details())

    shutil.copy(WEIGHTS_DIR / "rcn-300w-fast.json", tmp_path / "rcn-300w-fast.json")
    bare = load_landmarker(WEIGHTS_DIR / "rcn-300w-fast.keras").with_shape_prior(None)
    atomic_save_model(bare, tmp_path / "rcn-300w-fast.keras")
    card = set_twin("rcn-300w-fast", tmp_path, "float32", shared_300w)
    assert not {"tflite", "tflite_nme", "tflite_of"} & set(card) and not int8_twin()
    card = refresh_prior("rcn-300w-fast", tmp_path, shared_300w, target=(32, 3, 4))
    prior = load_landmarker(tmp_path / "rcn-300w-fast.keras").shape_prior
    assert (prior.num_modes, prior.iterations, prior.steps) == (32, 3, 4)
    assert [card["shape_prior"][k] for k in ("modes", "rounds", "steps")] == [32, 3, 4]
    assert card == json.loads((tmp_path / "rcn-300w-fast.json").read_text())
    card = set_twin("rcn-300w-fast", tmp_path, "int8", shared_300w)
    assert card == json.loads((tmp_path / "rcn-300w-fast.json").read_text()) and card["tflite"] == "int8"
    assert int8_twin() and abs(card["tflite_nme"] - card["validation"][0]["nme"]) < 0.2  # its own score
    assert card["tflite_of"] == keras_digest(tmp_path / "rcn-300w-fast.keras")  # the file it was made of
    (tmp_path / "rcn-300w-fast.tflite").unlink()
    write_twin(tmp_path / "rcn-300w-fast.keras", card, shared_300w)  # as --calibrate and --refresh-prior do
    assert int8_twin()
    # a model shipped in its place (here: itself) keeps the twin's format, and its card says so
    (tmp_path / "rcn-300w-fast.tflite").unlink()
    fresh = {k: v for k, v in card.items() if k not in ("tflite", "tflite_nme", "tflite_of")}
    package_pretrained(tmp_path / "rcn-300w-fast.keras", "rcn-300w-fast", fresh, "soft_argmax", tmp_path, prior)
    assert int8_twin() and json.loads((tmp_path / "rcn-300w-fast.json").read_text())["tflite"] == "int8"


def test_every_model_card_states_the_terms_of_every_dataset_it_learned_from():
    from ship_models import LICENCE, LICENCES, card_markdown, licence_for

    from rcn_keras.data.sources import DataConfig

    assert licence_for(DataConfig(source="300w", root="x")) == LICENCE
    assert licence_for(DataConfig(source="mtfl", root="x")) == LICENCES["mtfl"]
    both = licence_for(DataConfig(source="300w", root="x", extra_train=("../shared/data/mtfl", "runs/mtfl_dlib.csv")))
    assert both == f"{LICENCE} {LICENCES['mtfl']}"
    for name in list_presets(shipped=True):  # the shipped cards as written
        card = PRESETS[name].card()
        learned = {"300w": LICENCE, "mtfl": LICENCES["mtfl"]}
        assert learned[card.get("source", "300w")] in card["licence"], name
        if "MTFL" in card["data"] or card.get("source") == "mtfl":
            assert LICENCES["mtfl"] in card["licence"], name
        assert f"* Terms: {card['licence']}" in card_markdown([card])


def test_68_point_model_cards_say_where_the_error_sits():
    from ship_models import card_markdown

    for name in ("rcn-300w", "rcn-300w-hr", "rcn-300w-fast"):
        card = PRESETS[name].card()
        regions = card["validation_regions"]
        assert set(regions) == {"jaw", "brows", "nose", "eyes", "mouth", "jaw along", "jaw across"}
        assert regions["jaw"] > regions["eyes"] and regions["jaw along"] > regions["jaw across"]
        assert f"jaw {regions['jaw']:.2f} (along its contour {regions['jaw along']:.2f}" in card_markdown([card])
    assert "per face region" not in card_markdown([PRESETS["rcn-mtfl"].card()])


def test_a_run_competes_for_the_shipped_model_of_its_network():
    """`tools/ship_models.py` files each run under the shipped model of its network: the 160x160 input (a
    `model_options` override of the 80x80 recipe) is `rcn-300w-hr`, and its card says what it takes."""

    from ship_models import card_markdown, shipped_name

    hr = {"input_size": 160, "branches": 6, "output_level": 1}
    assert shipped_name("rcn_300w_refine", 68) == "rcn-300w"
    assert shipped_name("rcn_300w_refine", 68, "300w", hr) == "rcn-300w-hr"
    assert shipped_name("rcn_300w_fast", 68) == "rcn-300w-fast"
    assert shipped_name("rcn_mtfl_real", 5, "mtfl") == "rcn-mtfl"
    assert shipped_name("rcn_mtfl_real", 5) == "rcn-afw5"
    assert shipped_name("sumnet_mtfl_real", 5) == "sumnet-afw5"
    card = get_preset("rcn-300w-hr").card()
    assert card["model_options"] == hr and get_preset("rcn-300w-hr").model.input_size == 160
    assert "160x160 grey input" in card_markdown([card])
    assert "80x80 grey input" in card_markdown([get_preset("rcn-300w").card()])
    assert "1.3x rcn-300w's time" in card_markdown([card])
