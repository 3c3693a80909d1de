"""`lakebox catalog`: the nightly catalog export run now on the local stack, and restores from it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from datalake.catalog_backup import BACKUP_PREFIX, BackupSummary, latest_backup, load_backup, restore_catalog

if TYPE_CHECKING:
    from lakebox.box import Lakebox


def backup(box: Lakebox, now: dt.datetime | None = None) -> BackupSummary:
    """Run BackupCatalogFunction's handler now, with the event its schedule sends."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    event = {
        "version": "0",
        "id": f"lakebox-{moment:%Y%m%dT%H%M%SZ}",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }
    result: dict[str, Any] = box.lambdas.invoke("BackupCatalogFunction", event)
    return BackupSummary.model_validate(result)


def backups(box: Lakebox) -> list[str]:
    """The exports in the local artifacts bucket, oldest first."""
    s3 = box.session.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=box.bucket("ArtifactsBucket"), Prefix=BACKUP_PREFIX)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def restore(box: Lakebox, key: str | None = None) -> BackupSummary:
    """Restore the local catalog from an export (the newest when `key` is None), as scripts/restore-catalog.py does."""
    s3 = box.session.client("s3")
    bucket = box.bucket("ArtifactsBucket")
    chosen = key or latest_backup(s3, bucket)
    return restore_catalog(box.session.client("glue"), load_backup(s3, bucket, chosen), key=chosen)
