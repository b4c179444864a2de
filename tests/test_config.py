"""Config: validation, presets ← file ← overrides, YAML/TOML/JSON files, versioning."""

import json

import pytest

from lcmd_core.config import (
    ConfigError,
    DiffusionConfig,
    RunConfig,
    resolve_config,
    validate_config,
)


def test_defaults_validate_and_round_trip_through_json():
    cfg = RunConfig()
    again = validate_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again == cfg


def test_unknown_keys_and_wrong_types_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^model\.widht: Extra inputs"):
        validate_config({"model": {"widht": 3}})
    with pytest.raises(ConfigError, match=r"^train\.max_steps: "):
        validate_config({"train": {"max_steps": "many"}})
    with pytest.raises(ConfigError, match=r"logsnr_min must be below"):
        validate_config({"diffusion": {"logsnr_min": 3, "logsnr_max": 2}})


def test_newer_config_version_is_named():
    with pytest.raises(ConfigError, match="newer than this lcmd"):
        validate_config({"version": 99})


def test_precedence_preset_then_file_then_overrides(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("optim:\n  lr: 0.002\ntrain:\n  max_steps: 50\n")
    preset = {"optim": {"lr": 0.001, "embed_lr": 0.05}, "train": {"max_steps": 10}}
    cfg = resolve_config(preset=preset, file=file, overrides=["train.max_steps=70"])
    assert cfg.optim.lr == 0.002 and cfg.optim.embed_lr == 0.05 and cfg.train.max_steps == 70
    assert preset["train"]["max_steps"] == 10  # the preset itself is not modified


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.toml", '[model]\nsize = "S"\n[diffusion]\nshift = -2.0\n'),
        ("c.json", '{"model": {"size": "S"}, "diffusion": {"shift": -2.0}}'),
        ("c.yml", "model: {size: S}\ndiffusion: {shift: -2}\n"),
    ],
)
def test_config_file_formats(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    cfg = resolve_config(file=path)
    assert cfg.model.size == "S" and cfg.diffusion.shift == -2.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: [unclosed", "not valid"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve_config(file=path)
    with pytest.raises(ConfigError, match="no such file"):
        resolve_config(file=tmp_path / "missing.yaml")


def test_overrides_typecheck_and_reject_unknown_keys():
    cfg = resolve_config(overrides=["optim.betas=[0.8, 0.9]", "model.self_condition=true"])
    assert cfg.optim.betas == (0.8, 0.9) and cfg.model.self_condition is True
    with pytest.raises(ConfigError, match="no key 'lrr' in optim"):
        resolve_config(overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve_config(overrides=["optim.lr"])
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        resolve_config(overrides=["optim.lr=fast"])


def test_override_edge_cases():
    cfg = resolve_config(overrides=["data.codec_options.length=16", "data.dataset=123"])
    assert cfg.data.codec_options == {"length": 16} and cfg.data.dataset == "123"
    for bad in (
        "optim.lr=.inf",
        "optim.lr=nan",
        "data.codec_options=&x {a: *x}",
        "train.seed=2001-02-30",
    ):
        with pytest.raises(ConfigError):
            resolve_config(overrides=[bad])


def test_masked_run_drops_the_presets_continuous_settings_but_not_the_users():
    preset = {"diffusion": {"shift": 2.0, "ce_weight": 4.0}, "model": {"width": 48}}
    cfg = resolve_config(preset=preset, overrides=["diffusion.process=masked"])
    defaults = DiffusionConfig()
    assert (cfg.diffusion.shift, cfg.diffusion.ce_weight) == (defaults.shift, defaults.ce_weight)
    assert cfg.model.width == 48  # the preset's network stays
    assert resolve_config(preset=preset).diffusion.shift == 2.0
    with pytest.raises(ConfigError, match="shift"):
        resolve_config(preset=preset, overrides=["diffusion.process=masked", "diffusion.shift=1"])
