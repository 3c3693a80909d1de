"""The one S3 URI parser of lakebox (lakebox.services.s3uri), used by Athena, Glue, the crawler and SageMaker."""

from __future__ import annotations

import pytest

from lakebox.services.s3uri import split_s3_uri


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("s3://bucket/key/file.json", ("bucket", "key/file.json")),
        ("s3a://bucket/prefix/", ("bucket", "prefix/")),
        ("s3n://bucket", ("bucket", "")),
        ("s3://bucket/a#b?c", ("bucket", "a#b?c")),
    ],
)
def test_an_s3_uri_splits_into_bucket_and_key_as_written(uri: str, parts: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == parts


@pytest.mark.parametrize("text", ["https://bucket/key", "/tmp/file", "s3:///key", ""])
def test_anything_else_is_refused_with_its_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not an s3:// URI"):
        split_s3_uri(text)
