from __future__ import annotations

from ipaddress import ip_network
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
    [
        {"CARGOHOLD_PORT": "not a number"},
        {"CARGOHOLD_PORT": "70000"},
        {"CARGOHOLD_FSYNC": "maybe"},
        {"CARGOHOLD_TRUSTED_PROXIES": "lb.internal"},
        {"CARGOHOLD_TRUSTED_PROXIES": "10.0.0.0/33"},
    ],
)
def test_bad_values_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(environ=environ)


def test_unknown_settings_in_a_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "cargohold.toml"
    config.write_text("prot = 6000\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(config, environ={})


def test_trusted_proxies_from_a_list_or_a_comma_separated_variable(tmp_path: Path) -> None:
    config = tmp_path / "cargohold.toml"
    config.write_text('trusted_proxies = ["10.0.0.0/8", "fd00::1"]\n')
    from_file = load_settings(config, environ={})
    from_environment = load_settings(environ={"CARGOHOLD_TRUSTED_PROXIES": "10.0.0.0/8, fd00::1"})
    expected = (ip_network("10.0.0.0/8"), ip_network("fd00::1/128"))
    assert from_file.trusted_proxies == from_environment.trusted_proxies == expected
    assert load_settings(environ={}).trusted_proxies == ()


def test_blobs_on_s3_need_a_bucket_and_parts_s3_accepts() -> None:
    settings = load_settings(
        environ={"CARGOHOLD_BLOB_STORE": "s3", "CARGOHOLD_S3_BUCKET": "registry"}
    )
    assert settings.blob_store == "s3" and settings.s3_part_size == 8 * 1024 * 1024
    assert not settings.s3_presigned_redirects and settings.s3_prefix == ""
    with pytest.raises(ValidationError, match="needs s3_bucket"):
        load_settings(environ={"CARGOHOLD_BLOB_STORE": "s3", "CARGOHOLD_S3_BUCKET": ""})
    with pytest.raises(ValidationError):
        load_settings(environ={"CARGOHOLD_S3_PART_SIZE": str(4 * 1024 * 1024)})
    with pytest.raises(ValidationError):
        load_settings(environ={"CARGOHOLD_BLOB_STORE": "tape"})
