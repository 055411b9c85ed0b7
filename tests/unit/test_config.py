from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cargohold.config import load_settings


def test_defaults_use_sqlite_under_the_data_dir() -> None:
    settings = load_settings(environ={})
    assert settings.port == 5000
    assert settings.metadata_url == f"sqlite:///{Path('data') / 'cargohold.db'}"
    assert settings.blob_dir == Path("data") / "storage"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "cargohold.toml"
    config.write_text('port = 6000\nhost = "0.0.0.0"\nupload_ttl_seconds = 60\n')
    settings = load_settings(
        config,
        overrides={"host": "127.0.0.2", "data_dir": None},
        environ={"CARGOHOLD_PORT": "7000", "CARGOHOLD_DATA_DIR": "/srv/cargohold"},
    )
    assert settings.port == 7000  # the environment beats the file
    assert settings.host == "127.0.0.2"  # a flag beats both
    assert settings.upload_ttl_seconds == 60
    assert settings.data_dir == Path("/srv/cargohold")  # an unset flag changes nothing


@pytest.mark.parametrize(
    "environ",
    [{"CARGOHOLD_PORT": "not a number"}, {"CARGOHOLD_PORT": "70000"}, {"CARGOHOLD_FSYNC": "maybe"}],
)
def test_bad_values_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(environ=environ)


def test_unknown_settings_in_a_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "cargohold.toml"
    config.write_text("prot = 6000\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(config, environ={})
