"""Hadoop's local file system without a `chmod` process per file, for the local SparkSession (ADR 0039).

`java/LocalFileSystem.java` is compiled once per source and JDK, against PySpark's own jars, into a jar kept
beside the virtual environment's other files (`<sys.prefix>/share/lakebox/`). Without a JDK's `javac`, or when the
build fails, Spark keeps Hadoop's own class: slower, the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("java") / "LocalFileSystem.java"
CLASS_NAME = "lakebox.hadoop.LocalFileSystem"
"""What `fs.file.impl` names when the jar is there."""


def _spark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def local_fs_jar(folder: Path | None = None) -> Path | None:
    """The jar holding `CLASS_NAME`, built if missing; None when it cannot be (no `javac`, or a failed build)."""
    javac = shutil.which("javac")
    if javac is None:
        logger.info("no javac: local Spark keeps Hadoop's local file system (a chmod process per file)")
        return None
    # the JDK by where its javac lives (no JVM started to ask its version): another JDK builds its own jar
    key = hashlib.sha256(SOURCE.read_bytes() + os.path.realpath(javac).encode()).hexdigest()[:12]
    folder = folder or Path(sys.prefix) / "share" / "lakebox"
    jar = folder / f"local-fs-{key}.jar"
    if jar.exists():
        return jar
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lakebox-local-fs-") as build:
            classes = Path(build) / "classes"
            subprocess.run(
                [javac, "-nowarn", "-cp", str(_spark_jars() / "*"), "-d", str(classes), str(SOURCE)],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            partial = Path(build) / jar.name
            with zipfile.ZipFile(partial, "w") as archive:
                for path in sorted(classes.rglob("*.class")):
                    archive.write(path, path.relative_to(classes).as_posix())
            os.replace(shutil.copy(partial, folder / f".{jar.name}.{os.getpid()}"), jar)  # whole or not at all
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        logger.warning("building %s failed, local Spark keeps Hadoop's local file system: %s", jar.name, detail)
        return None
    return jar
