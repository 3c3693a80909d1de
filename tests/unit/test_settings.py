"""Settings come from `DL_*` variables (any case), arguments first, validated as pydantic reads text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from datalake.exceptions import ConfigurationError
from datalake.settings import Settings


def test_settings_read_their_variables_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN variables of the settings, one in lower case, and one that is no setting
    monkeypatch.setenv("DL_RAW_BUCKET", "raw-from-env")
    monkeypatch.setenv("dl_gzip_level", "2")
    monkeypatch.setenv("DL_NOT_A_SETTING", "ignored")
    # WHEN settings are built THEN each field is read from its variable and converted from text
    settings = Settings()
    assert settings.raw_bucket == "raw-from-env" and settings.gzip_level == 2
    # AND an argument wins over the environment
    assert Settings(raw_bucket="raw-from-argument").raw_bucket == "raw-from-argument"
    # AND a resource its environment does not name is a clear error when required
    with pytest.raises(ConfigurationError, match="DL_MANIFESTS_TABLE"):
        settings.require("manifests_table")


def test_settings_refuse_a_value_out_of_range_and_an_unknown_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_GZIP_LEVEL", "9")
    with pytest.raises(ValidationError, match="gzip_level"):
        Settings()
    monkeypatch.delenv("DL_GZIP_LEVEL")
    with pytest.raises(ValidationError, match="not_a_setting"):
        Settings(not_a_setting=1)
