"""The local Lambda runtime's sessions share botocore's parsed model files (ADR 0040)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from lakebox.services.lambdas import share_aws_data


def _loader(session: boto3.Session) -> object:
    return session._session.get_component("data_loader")


def test_sessions_share_one_loader_per_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the runtime's sharing in place (twice: it is installed once)
    share_aws_data()
    share_aws_data()
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)

    # WHEN two sessions are made, as two handlers make theirs, and one with a data path of its own
    first, second = boto3.Session(region_name="us-east-1"), boto3.Session(region_name="us-east-1")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    other = boto3.Session(region_name="us-east-1")

    # THEN the two share one loader, the third has another that searches its path, and clients work from each
    assert _loader(first) is _loader(second)
    assert _loader(other) is not _loader(first)
    assert str(tmp_path) in _loader(other).search_paths  # type: ignore[attr-defined]
    for session in (first, second, other):
        client = session.client("s3", endpoint_url="http://127.0.0.1:9")
        assert client.meta.service_model.operation_model("GetObject").http["method"] == "GET"
