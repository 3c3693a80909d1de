"""The artifacts the template's jobs name: the Glue scripts and `datalake.zip`, built and uploaded.

scripts/package-artifacts.py packages the same files for a deployed stack; lakebox uploads them to its own
artifacts bucket when it creates a job (`lakebox.cfn.provision`).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import boto3

REPO = Path(__file__).resolve().parents[2]
GLUE_SCRIPTS = REPO / "glue"
DATALAKE_PACKAGE = REPO / "layers" / "common" / "datalake"


def build_datalake_zip(dest: Path) -> Path:
    """Zip `layers/common/datalake` for Glue's `--extra-py-files` (deterministic: sorted, fixed times)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(DATALAKE_PACKAGE.rglob("*.py")):
            info = zipfile.ZipInfo(path.relative_to(DATALAKE_PACKAGE.parent).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return dest


def upload_glue_artifacts(session: boto3.Session, bucket: str, prefix: str = "glue/") -> dict[str, str]:
    """Upload `glue/*.py` and `datalake.zip` to the artifacts bucket; returns file name → S3 URI."""
    s3 = session.client("s3")
    uploaded = {}
    with tempfile.TemporaryDirectory(prefix="lakebox-artifacts-") as tmp:
        files = [*sorted(GLUE_SCRIPTS.glob("*.py")), build_datalake_zip(Path(tmp) / "datalake.zip")]
        for path in files:
            s3.upload_file(str(path), bucket, prefix + path.name)
            uploaded[path.name] = f"s3://{bucket}/{prefix}{path.name}"
    return uploaded
