#!/usr/bin/env python3
"""Build the Spark job's artifacts and upload them to the deployed stack's ArtifactsBucket (run after `sam deploy`)."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lakebox.cfn.artifacts import GLUE_SCRIPTS, build_datalake_zip  # noqa: E402
from lakebox.services.sagemaker import ML_ROOT, SOURCEDIR_KEY, build_sourcedir  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SAMCONFIG = REPO / "samconfig.toml"
LAYER_REQUIREMENTS = REPO / "layers" / "common" / "requirements.txt"
CACHE = REPO / ".aws-sam" / "artifacts"
BUCKET_OUTPUT = "ArtifactsBucketName"

# `sam deploy` uploads what the template's packageable properties name (functions, the layer, the state machine).
# The Spark job needs three more objects, which template.yaml (RawToProcessedJob) and statemachines/pipeline.asl.json
# (Run Spark On EMR Serverless) reference by these keys:
#   glue/*.py               the job script: Glue's ScriptLocation and EMR Serverless's EntryPoint
#   glue/datalake.zip       the datalake package: Glue's --extra-py-files, EMR Serverless's spark.submit.pyFiles
#   emr/python-env.tar.gz   Python 3.11 for linux/aarch64 with pydantic and boto3: EMR Serverless's spark.archives.
#   ml/<model>/sourcedir.tar.gz  a SageMaker model's code (ml/<model>/*.py): the pipeline's training and transform jobs'
#                           sagemaker_submit_directory / SAGEMAKER_SUBMIT_DIRECTORY (Train Forecast Model, ...).
#                           Its image runs Python 3.9 (Amazon Linux 2023); the job and the contracts need 3.11
#                           (StrEnum, datetime.UTC) and pydantic, which Glue 5.0 has built in or installs.
# The interpreter is a pinned, checksummed python-build-standalone build (relocatable, glibc 2.17+); the packages are
# the layer's pins, installed from their manylinux aarch64 wheels by pip's cross-platform mode, so the archive builds
# on any machine, without Docker. Builds are cached by their inputs' hash under .aws-sam/artifacts, and an upload is
# skipped when the object's sha256 metadata already matches.
GLUE_PREFIX = "glue/"
DATALAKE_ZIP_KEY = "glue/datalake.zip"
PYTHON_ENV_KEY = "emr/python-env.tar.gz"
PYTHON_ENV_INTERPRETER = "bin/python3.11"
"""The interpreter inside the archive; the ASL points PYSPARK_PYTHON at ./environment/<this>."""
PYTHON_ENV_PACKAGES = ("pydantic", "boto3")
"""What the job imports beyond PySpark that EMR Serverless's image lacks for Python 3.11, pinned by the layer."""
WHEEL_PLATFORM = "manylinux2014_aarch64"
"""EmrServerlessApplication's Architecture is ARM64."""
FIXED_MTIME = 1_577_836_800
"""2020-01-01T00:00:00Z: the time of every file the build itself writes, so equal inputs give equal bytes."""


@dataclass(frozen=True)
class PythonDist:
    """A python-build-standalone `install_only` archive: one `python/` folder, relocatable."""

    url: str
    sha256: str


PYTHON_DIST = PythonDist(
    url=(
        "https://github.com/astral-sh/python-build-standalone/releases/download/20250317/"
        "cpython-3.11.11+20250317-aarch64-unknown-linux-gnu-install_only.tar.gz"
    ),
    sha256="7d52b5206afe617de2899af477f5a1d275ecbce80fb8300301b254ebf1da5a90",
)


class ArtifactError(Exception):
    """A build or upload step that cannot go on; its message is the one line the CLI prints."""


@dataclass(frozen=True)
class Artifact:
    """A built file and the ArtifactsBucket key it goes to."""

    key: str
    path: Path

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes."""
        return _sha256(self.path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- building


def layer_pins(names: Iterable[str], requirements: Path = LAYER_REQUIREMENTS) -> list[str]:
    """The layer's `name==version` lines for the named packages (extras dropped), in the order asked.

    Parameters
    ----------
    names
        Distribution names, compared case-insensitively with `-` and `_` alike.
    requirements
        A pip requirements file of `name[extras]==version` lines.

    Returns
    -------
    list of str
        One `name==version` requirement per name.
    """
    pins: dict[str, str] = {}
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[_canonical(name.split("[", 1)[0])] = f"{name.split('[', 1)[0]}=={version}"
    missing = [name for name in names if _canonical(name) not in pins]
    if missing:
        raise ArtifactError(f"{requirements} pins no version of {', '.join(missing)}")
    return [pins[_canonical(name)] for name in names]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def fetch_python_dist(dist: PythonDist, cache: Path) -> Path:
    """Download the interpreter archive once into `cache`, checked against its pinned SHA-256.

    Parameters
    ----------
    dist
        Where the archive is (any URL urllib opens, `file://` included) and its expected digest.
    cache
        Folder of downloaded archives, reused while the digest matches.

    Returns
    -------
    Path
        The verified archive in `cache`.
    """
    target = cache / dist.url.rsplit("/", 1)[-1]
    if target.exists() and _sha256(target) == dist.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(dist.url, timeout=60) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, 1024 * 1024)
    except OSError as exc:
        raise ArtifactError(f"cannot download {dist.url}: {exc}") from exc
    actual = _sha256(partial)
    if actual != dist.sha256:
        partial.unlink()
        raise ArtifactError(f"{dist.url} has SHA-256 {actual}, expected {dist.sha256}")
    partial.replace(target)
    return target


def install_packages(target: Path, requirements: Sequence[str]) -> None:
    """Install `requirements` for CPython 3.11 on linux/aarch64 into `target` (pip's cross-platform mode).

    Only binary wheels are accepted, nothing is byte-compiled (the interpreter does that where it runs), and
    pip's own environment variables (`PIP_INDEX_URL`, `PIP_FIND_LINKS`, ...) apply as usual.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-script-location",
        "--target",
        str(target),
        "--platform",
        WHEEL_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--abi",
        "cp311",
        "--only-binary=:all:",
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise ArtifactError(f"pip could not install {' '.join(requirements)}: {detail[-1] if detail else 'no output'}")


def build_python_env(dest: Path, dist_archive: Path, requirements: Sequence[str]) -> Path:
    """Write the EMR Serverless Python environment: the interpreter with `requirements` in its site-packages.

    Parameters
    ----------
    dest
        The `.tar.gz` to write. Its root holds `bin/`, `lib/`...: Spark unpacks it as `./environment/`.
    dist_archive
        A python-build-standalone `install_only` archive (one top folder `python/`).
    requirements
        Requirement lines for pip, e.g. the layer's pins.

    Returns
    -------
    Path
        `dest`, byte-for-byte the same for the same inputs.
    """
    with tempfile.TemporaryDirectory(prefix="python-env-") as tmp:
        staging = Path(tmp)
        try:
            with tarfile.open(dist_archive, "r:gz") as archive:
                archive.extractall(staging, filter="data")
        except tarfile.TarError as exc:
            raise ArtifactError(f"cannot unpack {dist_archive.name}: {exc}") from exc
        root = staging / "python"
        if not (root / PYTHON_ENV_INTERPRETER).is_file():
            raise ArtifactError(f"{dist_archive.name} has no python/{PYTHON_ENV_INTERPRETER}")
        shipped = set(root.rglob("*"))
        site_packages = root / "lib" / "python3.11" / "site-packages"
        install_packages(site_packages, requirements)
        for path in root.rglob("*"):
            if path not in shipped and not path.is_symlink():
                os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        return pack_tree(root, dest)


def pack_tree(root: Path, dest: Path) -> Path:
    """Tar and gzip the folder `root` (its contents at the archive's root) reproducibly.

    Members are sorted, owned by 0:0 with no names, modes reduced to 0755/0644, folders and links dated
    `FIXED_MTIME`, and the gzip header carries no time or name. Files keep their modification times, so a
    shipped `.pyc` stays valid against its source.
    """

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if not info.isfile():
            info.mtime = FIXED_MTIME
        if info.isdir() or info.mode & 0o100:
            info.mode = 0o755
        else:
            info.mode = 0o644
        return info

    dest.parent.mkdir(parents=True, exist_ok=True)
    paths = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path in paths:
            info = normalize(archive.gettarinfo(str(path), arcname=path.relative_to(root).as_posix()))
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return dest


def _env_cache_key(dist: PythonDist, requirements: Sequence[str]) -> str:
    script = Path(__file__).read_bytes()
    material = "\n".join([dist.sha256, WHEEL_PLATFORM, *requirements, hashlib.sha256(script).hexdigest()])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def build_artifacts(out: Path, cache: Path = CACHE, dist: PythonDist = PYTHON_DIST) -> list[Artifact]:
    """Build every artifact into `out` (the key's layout) and return them, the Python environment from cache.

    Parameters
    ----------
    out
        Folder the artifacts are written to, at their keys (`out/glue/datalake.zip`, ...).
    cache
        Folder of the downloaded interpreter and of built environments, keyed by their inputs.
    dist
        The interpreter archive to build the environment from.

    Returns
    -------
    list of Artifact
        The job scripts, `datalake.zip`, the SageMaker source dirs and the Python environment, sorted by key.
    """
    artifacts = []
    for model in sorted(p.name for p in ML_ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        key = SOURCEDIR_KEY.format(model=model)
        artifacts.append(Artifact(key, build_sourcedir(model, out / key)))
    for script in sorted(GLUE_SCRIPTS.glob("*.py")):
        target = out / GLUE_PREFIX / script.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(script, target)
        artifacts.append(Artifact(GLUE_PREFIX + script.name, target))
    artifacts.append(Artifact(DATALAKE_ZIP_KEY, build_datalake_zip(out / DATALAKE_ZIP_KEY)))

    requirements = layer_pins(PYTHON_ENV_PACKAGES)
    cached = cache / f"python-env-{_env_cache_key(dist, requirements)}.tar.gz"
    if not cached.exists():
        building = cached.with_name(cached.name + ".part")
        build_python_env(building, fetch_python_dist(dist, cache), requirements)
        building.replace(cached)
    target = out / PYTHON_ENV_KEY
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    artifacts.append(Artifact(PYTHON_ENV_KEY, target))
    return sorted(artifacts, key=lambda artifact: artifact.key)


# ----------------------------------------------------------------------------------------------- deploying


@dataclass(frozen=True)
class Target:
    """Where the deployed stack is."""

    stack_name: str
    region: str | None


def read_samconfig(config_env: str, samconfig: Path = SAMCONFIG) -> Target:
    """The stack name and region `sam deploy --config-env <config_env>` uses (deploy over global parameters).

    Parameters
    ----------
    config_env
        A table of samconfig.toml (`default`, `dev`, `prod`).
    samconfig
        The SAM CLI configuration file.

    Returns
    -------
    Target
        The stack name and the region (None when the file names none: boto3's default then applies).
    """
    try:
        config = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ArtifactError(f"cannot read {samconfig}: {exc}") from exc
    environment = config.get(config_env)
    if not isinstance(environment, dict):
        raise ArtifactError(f"{samconfig.name} has no [{config_env}] environment")
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(environment.get(command, {}).get("parameters", {}))
    if not merged.get("stack_name"):
        raise ArtifactError(f"{samconfig.name} [{config_env}] names no stack_name")
    return Target(str(merged["stack_name"]), str(merged["region"]) if merged.get("region") else None)


def stack_artifacts_bucket(cloudformation: Any, stack_name: str) -> str:
    """The deployed stack's `ArtifactsBucketName` output, read with a boto3 CloudFormation client."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise ArtifactError(f"cannot read stack {stack_name}: {exc.response['Error']['Message']}") from exc
    outputs = {str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in stacks[0].get("Outputs", [])}
    if not outputs.get(BUCKET_OUTPUT):
        raise ArtifactError(f"stack {stack_name} has no {BUCKET_OUTPUT} output (is it deployed from this template?)")
    return outputs[BUCKET_OUTPUT]


def upload(s3: S3Client, bucket: str, artifacts: Iterable[Artifact]) -> list[tuple[Artifact, bool]]:
    """Upload each artifact unless the object at its key already has its SHA-256; returns (artifact, uploaded).

    The digest travels as the object's `sha256` metadata; the bucket's default encryption (the stack's KMS key)
    applies to every upload.
    """
    results = []
    for artifact in artifacts:
        digest = artifact.sha256
        try:
            current = s3.head_object(Bucket=bucket, Key=artifact.key).get("Metadata", {}).get("sha256")
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in {"404", "NoSuchKey", "NotFound"}:
                raise ArtifactError(f"cannot read s3://{bucket}/{artifact.key}: {exc}") from exc
            current = None
        if current == digest:
            results.append((artifact, False))
            continue
        try:
            s3.upload_file(str(artifact.path), bucket, artifact.key, ExtraArgs={"Metadata": {"sha256": digest}})
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactError(f"cannot upload s3://{bucket}/{artifact.key}: {exc}") from exc
        results.append((artifact, True))
    return results


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} MiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build the Spark job's artifacts and upload them to the deployed stack's ArtifactsBucket."
    )
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default: default)")
    parser.add_argument("--stack-name", help="the stack (default: samconfig.toml's stack_name)")
    parser.add_argument("--region", help="the stack's region (default: samconfig.toml's region)")
    parser.add_argument("--bucket", help="upload here instead of the stack's ArtifactsBucketName output")
    parser.add_argument("--out", type=Path, help="build into this folder and upload nothing")
    parser.add_argument("--cache-dir", type=Path, default=CACHE, help=f"build cache (default: {CACHE})")
    parser.add_argument("--python-dist", help="URL or path of the interpreter archive (default: the pinned build)")
    parser.add_argument("--python-dist-sha256", help="SHA-256 of --python-dist (required with it)")
    return parser


def _dist(args: argparse.Namespace) -> PythonDist:
    if args.python_dist is None:
        return PYTHON_DIST
    if not args.python_dist_sha256:
        raise ArtifactError("--python-dist needs --python-dist-sha256")
    location = str(args.python_dist)
    url = location if "://" in location else Path(location).resolve().as_uri()
    return PythonDist(url=url, sha256=str(args.python_dist_sha256).lower())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """Build, then upload to the stack's ArtifactsBucket (or only build, with `--out`); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        dist = _dist(args)
        with tempfile.TemporaryDirectory(prefix="artifacts-") as tmp:
            out: Path = args.out or Path(tmp)
            artifacts = build_artifacts(out, args.cache_dir, dist)
            if args.out is not None:
                for artifact in artifacts:
                    print(f"built {artifact.path} ({_size(artifact.path)})")
                return 0
            target = read_samconfig(args.config_env) if not args.stack_name else Target(args.stack_name, None)
            session = boto3.Session(region_name=args.region or target.region or environ.get("AWS_REGION"))
            bucket = args.bucket or stack_artifacts_bucket(session.client("cloudformation"), target.stack_name)
            for artifact, uploaded in upload(session.client("s3"), bucket, artifacts):
                state = "uploaded " if uploaded else "unchanged"
                print(f"{state} s3://{bucket}/{artifact.key} ({_size(artifact.path)})")
    except ArtifactError as exc:
        print(f"package-artifacts: {exc}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"package-artifacts: AWS: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
