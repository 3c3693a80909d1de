"""`lakebox catalog backup | list | restore`: BackupCatalogFunction's handler on the local stack, and the round trip."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lakebox.app import catalog_backup

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_on_box(local_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def reuse(**_: Any) -> Iterator[Any]:
        yield local_stack

    monkeypatch.setattr("lakebox.runtime.lakebox", reuse)


def test_backup_then_restore_brings_a_dropped_table_back(local_stack: Any) -> None:
    # GIVEN a table in the local catalog, backed up by the function's own handler
    glue = local_stack.session.client("glue")
    location = f"s3://{local_stack.bucket('CuratedBucket')}/daily_sales_by_region/runs/r1/"
    glue.create_table(
        DatabaseName="data_lake_db",
        TableInput={"Name": "daily_sales_by_region", "StorageDescriptor": {"Location": location}},
    )
    summary = catalog_backup.backup(local_stack, now=dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC))
    assert summary.key == "catalog-backups/2026/11/23/20261123T033000Z.json.gz"
    assert summary.key in catalog_backup.backups(local_stack)
    # WHEN the table is dropped and the newest backup restored
    glue.delete_table(DatabaseName="data_lake_db", Name="daily_sales_by_region")
    restored = catalog_backup.restore(local_stack)
    # THEN it is back with its location, and a second restore changes nothing
    assert restored.created == 1
    table = glue.get_table(DatabaseName="data_lake_db", Name="daily_sales_by_region")["Table"]
    assert table["StorageDescriptor"]["Location"] == location
    assert catalog_backup.restore(local_stack, summary.key).created == 0


def test_lakebox_catalog_commands(cli_on_box: None, capsys: pytest.CaptureFixture[str]) -> None:
    from lakebox.cli import main

    assert main(["catalog", "backup", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    assert main(["catalog", "list"]) == 0
    assert key in capsys.readouterr().out.split()
    assert main(["catalog", "restore", "--key", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == key
    assert main(["catalog", "restore", "--key", "catalog-backups/none.json.gz"]) == 1
    assert "cannot read" in capsys.readouterr().err
