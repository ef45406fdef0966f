"""Settings from the environment: typed, bounded, one rule for booleans, errors that name the
variable; and the constructor reads no environment (factories get what they are given)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lookalike.models import get_backbone
from lookalike.schema import parse_bool
from lookalike.settings import IndexerSettings, Settings, SettingsError
from support import REPO


def test_environment_values_are_typed() -> None:
    settings = Settings.from_env(
        {
            "LOOKALIKE_EMBED_BATCH_SIZE": "8",
            "LOOKALIKE_QUERY_TIMEOUT_S": "2.5",
            "LOOKALIKE_MODEL_CACHE": "/srv/models",
            "LOOKALIKE_DUPLICATE_KEYPOINTS": "Off",
            "LOOKALIKE_TTA_FLIP": "yes",
            "LOOKALIKE_LOG_LEVEL": "debug",
            "LOOKALIKE_REDIS_URL": "",  # empty counts as unset
            "HOME": "/root",  # not ours: ignored
        }
    )
    assert settings.embed_batch_size == 8
    assert settings.query_timeout_s == 2.5
    assert settings.model_cache == Path("/srv/models")
    assert (settings.duplicate_keypoints, settings.tta_flip) == (False, True)
    assert settings.log_level == "DEBUG"
    assert settings.redis_url == ""


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LOOKALIKE_MODEL", "resnet", "must be one of efficientnet-lite0"),
        ("LOOKALIKE_RUNTIME", "onnx", "'tflite' or 'keras'"),
        ("LOOKALIKE_EMBED_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("LOOKALIKE_EMBED_BATCH_SIZE", "two", "valid integer"),
        ("LOOKALIKE_DUPLICATE_THRESHOLD", "1.5", "less than or equal to 1"),
        ("LOOKALIKE_WORKER_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("LOOKALIKE_TTA_FLIP", "maybe", "not a boolean"),
        ("LOOKALIKE_HEAD", "Not A Name", "head name"),
        ("LOOKALIKE_HEAD", "none", "leave it empty for none"),
        ("LOOKALIKE_API_KEYS_WRITE", "short", "at least 8 characters"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=rf"{name}: .*{re.escape(says)}"):
        Settings.from_env({name: value})


def test_overrides_win_and_replace_checks_like_a_new_object() -> None:
    settings = Settings.from_env({"LOOKALIKE_COLLECTION": "env"}, collection="explicit")
    assert settings.collection == "explicit"
    assert settings.replace(model="efficientnet-lite1").model == "efficientnet-lite1"
    with pytest.raises(SettingsError, match="LOOKALIKE_EMBED_BATCH_SIZE"):
        settings.replace(embed_batch_size=-1)
    assert settings.replace() == settings and hash(settings.replace()) == hash(settings)


def test_the_constructor_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_COLLECTION", "from-env")
    assert Settings().collection == "catalog"
    assert Settings.from_env().collection == "from-env"


def test_one_rule_for_booleans_in_settings_and_catalog_values() -> None:
    from lookalike.schema import CatalogField

    field = CatalogField("in_stock", "bool", frozenset({"filter"}))
    for word in ("true", "1", "yes", "y", "on", " TRUE "):
        assert parse_bool(word) is True
        assert Settings.from_env({"LOOKALIKE_TTA_FLIP": word}).tta_flip is True
        assert field.from_text(word) is True
    for word in ("false", "0", "no", "n", "off"):
        assert parse_bool(word) is False
        assert field.from_text(word) is False
    assert parse_bool("2") is None


def test_the_indexer_reads_its_own_variables() -> None:
    settings = IndexerSettings.from_env(
        {
            "LOOKALIKE_API_URL": "http://api:8000",
            "LOOKALIKE_API_KEY": "k" * 12,
            "LOOKALIKE_INDEXER_STATE_DIR": "/var/lib/indexer",
            "LOOKALIKE_MODEL": "not the indexer's business",
        }
    )
    assert (settings.api_url, settings.api_key) == ("http://api:8000", "k" * 12)
    assert settings.indexer_state_dir == Path("/var/lib/indexer")


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for model in (Settings, IndexerSettings):
        for name in model.model_fields:
            assert f"`LOOKALIKE_{name.upper()}`" in readme, name


def test_the_readme_gives_each_settings_default() -> None:
    """The settings table's default column says what the code does: a number as the number,
    a switch as true or false, an unset text as "empty" (a default derived from another
    setting is described in words and not read here). The duplicate threshold's row once
    said 0.04 after the default had become 0.02."""
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `LOOKALIKE_([A-Z0-9_]+)` \| ([^|]*) \|", readme, re.M))
    checked = 0
    for name, field in Settings.model_fields.items():
        default, cell = field.default, rows[name.upper()].strip()
        if isinstance(default, bool):
            assert cell == f"`{str(default).lower()}`", name
        elif isinstance(default, int | float):
            assert float(cell.strip("`")) == default, name
        elif default in ("", None):
            continue  # "empty", or what unset means (the catalog schema's four fields)
        elif isinstance(default, str):
            assert cell == f"`{default}`", name
        else:
            continue
        checked += 1
    assert checked >= 30


def test_input_size_and_pooling_default_to_the_backbones_and_are_checked() -> None:
    # 0 and "": the backbone's own defaults (lookalike/models.py), Lite0 at 320 px with GeM.
    assert (Settings().input_size, Settings().pooling) == (0, "")
    assert get_backbone(Settings().model).resolve() == (320, "gem")
    assert get_backbone("efficientnet-lite1").resolve() == (240, "gem")
    assert get_backbone("efficientnet-lite2").resolve() == (260, "gem")
    # The earlier default, pinned.
    chosen = Settings.from_env({"LOOKALIKE_INPUT_SIZE": "224", "LOOKALIKE_POOLING": "avg"})
    assert (chosen.input_size, chosen.pooling) == (224, "avg")
    assert get_backbone(chosen.model).resolve(chosen.input_size, chosen.pooling) == (224, "avg")
    assert Settings.from_env({"LOOKALIKE_INPUT_SIZE": "", "LOOKALIKE_POOLING": ""}) == Settings()
    for environ, variable in (
        ({"LOOKALIKE_POOLING": "max"}, "LOOKALIKE_POOLING"),
        ({"LOOKALIKE_INPUT_SIZE": "32"}, "LOOKALIKE_INPUT_SIZE"),
        ({"LOOKALIKE_INPUT_SIZE": "4096"}, "LOOKALIKE_INPUT_SIZE"),
        ({"LOOKALIKE_INPUT_SIZE": "-1"}, "LOOKALIKE_INPUT_SIZE"),
    ):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env(environ)
    for pooling in ("gem", "avg"):
        with pytest.raises(SettingsError, match="LOOKALIKE_CUSTOM_MODEL_INPUT_SIZE"):
            Settings(model="custom", custom_model_path=Path("m.keras"), pooling=pooling)
    assert Settings(model="custom", custom_model_path=Path("m.keras")).pooling == ""


def test_tags_pass_is_off_by_default_and_checked() -> None:
    assert Settings().tags_pass == ""
    assert Settings.from_env({"LOOKALIKE_TAGS_PASS": "224"}).tags_pass == "224"
    assert Settings.from_env({"LOOKALIKE_TAGS_PASS": ""}) == Settings()
    with pytest.raises(SettingsError, match="LOOKALIKE_TAGS_PASS"):
        Settings.from_env({"LOOKALIKE_TAGS_PASS": "320"})
    # A second pass at the side the model already runs at would repeat the first.
    with pytest.raises(SettingsError, match="already runs at 224 px"):
        Settings.from_env(
            {
                "LOOKALIKE_TAGS_PASS": "224",
                "LOOKALIKE_INPUT_SIZE": "224",
                "LOOKALIKE_POOLING": "avg",
            }
        )
    with pytest.raises(SettingsError, match="LOOKALIKE_TAGS_PASS is for the shipped backbones"):
        Settings(model="custom", custom_model_path=Path("m.keras"), tags_pass="224")
