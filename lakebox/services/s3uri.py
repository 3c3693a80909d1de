"""The one S3 URI parser of lakebox: `s3://bucket/key` (or `s3a://`, `s3n://`, as Spark and Glue write them)."""

from __future__ import annotations

SCHEMES = ("s3://", "s3a://", "s3n://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key); the key is kept as written (S3 keys may hold `#` and `?`).

    Raises ValueError for anything else, naming the text.
    """
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    bucket, _, key = uri[len(scheme) :].partition("/") if scheme else ("", "", "")
    if not bucket:
        raise ValueError(f"{uri!r} is not an s3:// URI")
    return bucket, key
