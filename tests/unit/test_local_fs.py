"""The local SparkSession's file system: Hadoop's, with permissions set without a `chmod` process (ADR 0039)."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lakebox.services import local_fs


def _modes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): oct(stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if not path.name.startswith(".")  # Hadoop's checksum files
    }


def test_the_jar_is_built_once_per_source_and_jdk(tmp_path: Path) -> None:
    # WHEN the jar is asked for twice
    jar = local_fs.local_fs_jar(tmp_path)
    again = local_fs.local_fs_jar(tmp_path)
    # THEN the second answer is the first jar, which holds the class `fs.file.impl` names
    assert jar is not None and again == jar
    names = zipfile.ZipFile(jar).namelist()
    assert f"{local_fs.CLASS_NAME.replace('.', '/')}.class" in names
    assert [p.name for p in tmp_path.iterdir()] == [jar.name]


def test_without_javac_spark_keeps_hadoops_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_fs.shutil, "which", lambda name: None)
    assert local_fs.local_fs_jar(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_spark_writes_with_it_and_the_files_modes_are_hadoops(spark: Any, tmp_path: Path) -> None:
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    # GIVEN the session's file system for file: URIs
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)
    assert fs.getClass().getName() == local_fs.CLASS_NAME

    # WHEN a partitioned write runs, and folders get modes with and without the sticky bit
    frame = spark.range(30).selectExpr("id", "id % 3 AS day")
    frame.write.partitionBy("day").parquet((tmp_path / "t").as_uri())
    for name, mode in (("plain", 0o750), ("sticky", 0o1777)):
        path = jvm.org.apache.hadoop.fs.Path((tmp_path / name).as_uri())
        fs.mkdirs(path)
        fs.setPermission(path, jvm.org.apache.hadoop.fs.permission.FsPermission(mode))

    # THEN files and folders have the modes Hadoop gives them (umask 022), and a sticky folder keeps its bit
    modes = _modes(tmp_path)
    assert modes.pop("plain") == "0o750" and modes.pop("sticky") == "0o1777"
    assert modes.pop("t") == "0o755"
    folders = {p: m for p, m in modes.items() if (tmp_path / p).is_dir()}
    assert folders == {f"t/day={day}": "0o755" for day in range(3)}
    files = {p: m for p, m in modes.items() if p not in folders}
    assert len([p for p in files if p.endswith(".parquet")]) >= 3 and set(files.values()) == {"0o644"}
