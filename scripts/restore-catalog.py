#!/usr/bin/env python3
"""Restore the lake's Glue catalog on AWS from a nightly export (catalog-backups/ in the artifacts bucket).

    python scripts/restore-catalog.py --bucket "$(out ArtifactsBucketName)" --list
    python scripts/restore-catalog.py --bucket "$(out ArtifactsBucketName)" --dry-run       # the newest export
    python scripts/restore-catalog.py --bucket "$(out ArtifactsBucketName)" --key catalog-backups/2026/11/23/….json.gz

Run it as a Lake Formation data lake administrator (it creates and updates tables). Tables and partitions the
export does not hold are left alone; a second run changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "layers" / "common") not in sys.path:
    sys.path.insert(0, str(REPO / "layers" / "common"))

from datalake.catalog_backup import BACKUP_PREFIX, latest_backup, load_backup, restore_catalog  # noqa: E402
from datalake.exceptions import DataLakeError  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, restore (or list, or only count), print the outcome as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bucket", required=True, help="the stack's ArtifactsBucketName")
    parser.add_argument("--key", help=f"the export to restore (default: the newest under {BACKUP_PREFIX})")
    parser.add_argument("--region", help="the stack's region (default: the AWS CLI's)")
    parser.add_argument("--list", action="store_true", help="list the exports and change nothing")
    parser.add_argument("--dry-run", action="store_true", help="read the export and print what it holds")
    args = parser.parse_args(argv)
    session = boto3.Session(region_name=args.region)
    s3, glue = session.client("s3"), session.client("glue")
    try:
        if args.list:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=BACKUP_PREFIX)
            for page in pages:
                for obj in page.get("Contents", []):
                    print(obj["Key"])
            return 0
        key = args.key or latest_backup(s3, args.bucket)
        document = load_backup(s3, args.bucket, key)
        if args.dry_run:
            tables = [t["table"]["Name"] for d in document["databases"] for t in d["tables"]]
            print(json.dumps({"key": key, "exported_at": document["exported_at"], "tables": tables}, indent=2))
            return 0
        print(json.dumps(restore_catalog(glue, document, key=key).model_dump(), indent=2))
    except (DataLakeError, ClientError, BotoCoreError) as exc:
        print(f"restore-catalog: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
