"""The EMR Serverless Python environment built with pip, and lakebox publishing the job artifacts like the deploy."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "package-artifacts.py"
DIST_MTIME = 1_600_000_000


@pytest.fixture(scope="module")
def pa() -> Iterator[ModuleType]:
    """The script, imported as a module."""
    spec = importlib.util.spec_from_file_location("package_artifacts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def python_dist(tmp_path: Path) -> Path:
    """A stand-in for a python-build-standalone `install_only` archive: `python/bin/python3.11` and a stdlib."""
    root = tmp_path / "dist" / "python"
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    interpreter = root / "bin" / "python3.11"
    interpreter.write_text("#!/bin/sh\nexit 0\n")
    interpreter.chmod(0o700)
    (root / "bin" / "python3").symlink_to("python3.11")
    stdlib = root / "lib" / "python3.11" / "os.py"
    stdlib.write_text("sep = '/'\n")
    for path in (interpreter, stdlib):
        os.utime(path, (DIST_MTIME, DIST_MTIME))
    archive = tmp_path / "cpython-3.11-install_only.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="python")
    return archive


def make_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so pip installs it offline from `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {info.name: info for info in tar.getmembers()}


def test_python_env_archive_is_reproducible_and_holds_the_interpreter_and_packages(
    pa: ModuleType, python_dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an interpreter archive and a wheel pip installs offline
    make_wheel(tmp_path / "wheels")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))

    # WHEN the environment is built twice
    first = pa.build_python_env(tmp_path / "one.tar.gz", python_dist, ["tinydep==1.0"])
    second = pa.build_python_env(tmp_path / "two.tar.gz", python_dist, ["tinydep==1.0"])

    # THEN the archives are the same bytes, rooted where Spark unpacks them (./environment/bin/python3.11)
    assert first.read_bytes() == second.read_bytes()
    entries = members(first)
    interpreter = entries[pa.PYTHON_ENV_INTERPRETER]
    assert interpreter.isfile() and interpreter.mode == 0o755
    assert entries["bin/python3"].issym() and entries["bin/python3"].linkname == "python3.11"
    # AND the package is in the interpreter's site-packages, not byte-compiled
    installed = entries["lib/python3.11/site-packages/tinydep/__init__.py"]
    assert not [name for name in entries if name.endswith(".pyc")]
    # AND ownership is anonymous, the shipped stdlib keeps its time, the installed files get the fixed one
    assert {(info.uid, info.gid, info.uname, info.gname) for info in entries.values()} == {(0, 0, "", "")}
    assert entries["lib/python3.11/os.py"].mtime == DIST_MTIME
    assert (installed.mtime, installed.mode) == (pa.FIXED_MTIME, 0o644)


def test_the_emr_environment_gets_the_aarch64_wheels_of_the_layer_pins(
    pa: ModuleType, python_dist: Path, tmp_path: Path
) -> None:
    # GIVEN the layer's pins of what the job imports (installed from the package index)
    requirements = pa.layer_pins(pa.PYTHON_ENV_PACKAGES)

    # WHEN the environment is built on this x86-64 machine
    entries = members(pa.build_python_env(tmp_path / "env.tar.gz", python_dist, requirements))

    # THEN pydantic's compiled core is the CPython 3.11 aarch64 build, and boto3 is beside it
    site = "lib/python3.11/site-packages/"
    cores = [name for name in entries if name.startswith(f"{site}pydantic_core/_pydantic_core.")]
    assert cores == [f"{site}pydantic_core/_pydantic_core.cpython-311-aarch64-linux-gnu.so"]
    versions = {pin.split("==")[0].lower(): pin.split("==")[1] for pin in requirements}
    assert f"{site}pydantic-{versions['pydantic']}.dist-info/METADATA" in entries
    assert f"{site}boto3-{versions['boto3']}.dist-info/METADATA" in entries


def test_lakebox_publishes_the_job_artifacts_where_the_template_points(
    pa: ModuleType, local_stack: Any, tmp_path: Path
) -> None:
    # GIVEN the template's stack brought up by lakebox
    s3 = local_stack.session.client("s3")
    job = local_stack.session.client("glue").get_job(JobName=local_stack.stack.ref("RawToProcessedJob"))["Job"]
    bucket = local_stack.bucket("ArtifactsBucket")

    # THEN the job's script and its --extra-py-files are in the artifacts bucket, as the deploy step leaves them
    assert job["Command"]["ScriptLocation"] == f"s3://{bucket}/glue/raw_to_processed.py"
    assert job["DefaultArguments"]["--extra-py-files"] == f"s3://{bucket}/{pa.DATALAKE_ZIP_KEY}"
    script = s3.get_object(Bucket=bucket, Key="glue/raw_to_processed.py")["Body"].read()
    assert script == (ROOT / "glue" / "raw_to_processed.py").read_bytes()
    # AND datalake.zip is byte for byte the one the deploy step builds
    local_zip = s3.get_object(Bucket=bucket, Key=pa.DATALAKE_ZIP_KEY)["Body"].read()
    assert local_zip == pa.build_datalake_zip(tmp_path / "datalake.zip").read_bytes()
