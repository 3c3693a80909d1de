"""scripts/package-artifacts.py: reproducible job artifacts, their upload, and their agreement with the template."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.contracts import REGISTRY
from lakebox.cfn.template import load_template

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package-artifacts.py"
ASL = ROOT / "statemachines" / "pipeline.asl.json"
ARTIFACT_URI = re.compile(r"s3://\$\{ArtifactsBucket\}/([^\s\"#,]+)")


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


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


# ---------------------------------------------------------------------------------------------- building


def test_datalake_zip_is_byte_identical_across_builds_and_imports_the_contracts(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN two builds of the artifacts' datalake.zip
    first = pa.build_datalake_zip(tmp_path / "a" / "datalake.zip")
    second = pa.build_datalake_zip(tmp_path / "b" / "datalake.zip")

    # THEN they are the same bytes
    assert first.read_bytes() == second.read_bytes()
    # AND a Python with only the zip (and pydantic) on its path imports the contracts from it, as Spark does
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path[:0] = [{str(first)!r}]; sys.path.append({site_packages!r}); "
        "import datalake.contracts as c; print(c.__file__); print(','.join(sorted(c.REGISTRY)))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    origin, datasets = result.stdout.split()
    assert origin.startswith(str(first))
    assert datasets == ",".join(sorted(REGISTRY))


def test_a_dist_without_the_interpreter_is_refused(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN an archive without python/bin/python3.11
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("python/README")
        tar.addfile(info, io.BytesIO(b""))

    # WHEN it is used THEN the build stops, naming what is missing
    with pytest.raises(pa.ArtifactError, match=r"has no python/bin/python3\.11"):
        pa.build_python_env(tmp_path / "env.tar.gz", archive, [])


def test_a_dist_that_is_not_a_tar_archive_is_one_clear_error(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN an interpreter "archive" that is not a gzip tar
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"not an archive")

    # WHEN it is used THEN the build stops, naming the archive
    with pytest.raises(pa.ArtifactError, match=r"cannot unpack broken\.tar\.gz"):
        pa.build_python_env(tmp_path / "env.tar.gz", archive, [])


def test_python_dist_is_checked_against_its_digest_and_downloaded_once(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN an interpreter archive at a URL, and its digest
    dist = tmp_path / "cpython-install_only.tar.gz"
    dist.write_bytes(b"an interpreter")
    digest = hashlib.sha256(b"an interpreter").hexdigest()
    cache = tmp_path / "cache"

    # WHEN it is fetched with a wrong digest THEN nothing is kept
    with pytest.raises(pa.ArtifactError, match="has SHA-256"):
        pa.fetch_python_dist(pa.PythonDist(dist.as_uri(), "0" * 64), cache)
    assert list(cache.iterdir()) == []

    # WHEN it is fetched with the right digest THEN it lands in the cache, and later fetches reuse it
    fetched = pa.fetch_python_dist(pa.PythonDist(dist.as_uri(), digest), cache)
    dist.unlink()
    assert pa.fetch_python_dist(pa.PythonDist(dist.as_uri(), digest), cache) == fetched
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == digest


def test_an_unreachable_python_dist_is_one_clear_error(pa: ModuleType, tmp_path: Path) -> None:
    # WHEN the archive's URL cannot be read THEN the error names the URL
    missing = (tmp_path / "absent.tar.gz").as_uri()
    with pytest.raises(pa.ArtifactError, match=f"cannot download {re.escape(missing)}"):
        pa.fetch_python_dist(pa.PythonDist(missing, "0" * 64), tmp_path / "cache")


def test_layer_pins_come_from_the_layer_requirements_without_extras(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN a requirements file with extras, comments and another spelling of a name
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\naws-lambda-powertools[parser]==3.37.0\nPydantic==2.14.3  # contracts\n")

    # THEN the pins are the named packages', in the order asked, and a missing one is an error
    assert pa.layer_pins(["pydantic", "aws_lambda_powertools"], requirements) == [
        "Pydantic==2.14.3",
        "aws-lambda-powertools==3.37.0",
    ]
    with pytest.raises(pa.ArtifactError, match="pins no version of boto3"):
        pa.layer_pins(["boto3"], requirements)


# ---------------------------------------------------------------------------------------------- deploying


def test_samconfig_deploy_parameters_name_the_stack_and_region(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN the project's samconfig.toml and one whose deploy table overrides the global one
    override = tmp_path / "samconfig.toml"
    override.write_text(
        'version = 0.1\n[qa.global.parameters]\nstack_name = "lake"\nregion = "eu-west-1"\n'
        '[qa.deploy.parameters]\nstack_name = "lake-qa"\n'
    )

    # THEN each environment resolves as `sam deploy --config-env` does
    assert pa.read_samconfig("dev") == pa.Target("serverless-data-lake-dev", "us-east-1")
    assert pa.read_samconfig("qa", override) == pa.Target("lake-qa", "eu-west-1")
    with pytest.raises(pa.ArtifactError, match=r"has no \[staging\] environment"):
        pa.read_samconfig("staging", override)


@mock_aws
def test_upload_skips_objects_whose_digest_already_matches(pa: ModuleType, tmp_path: Path) -> None:
    # GIVEN a bucket and two artifacts
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")
    for name in ("a.py", "b.zip"):
        (tmp_path / name).write_bytes(name.encode())
    artifacts = [pa.Artifact(f"glue/{name}", tmp_path / name) for name in ("a.py", "b.zip")]

    # WHEN they are uploaded, then one changes and both are uploaded again
    first = pa.upload(s3, "artifacts", artifacts)
    (tmp_path / "b.zip").write_bytes(b"changed")
    second = pa.upload(s3, "artifacts", artifacts)

    # THEN the first upload wrote both, the second only the changed one, each object carrying its digest
    assert [uploaded for _, uploaded in first] == [True, True]
    assert [(artifact.key, uploaded) for artifact, uploaded in second] == [("glue/a.py", False), ("glue/b.zip", True)]
    head = s3.head_object(Bucket="artifacts", Key="glue/b.zip")
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"changed").hexdigest()


STACK_TEMPLATE = {
    "Resources": {"ArtifactsBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {"ArtifactsBucketName": {"Value": {"Ref": "ArtifactsBucket"}}},
}


@mock_aws
def test_main_uploads_every_artifact_to_the_stack_bucket_and_then_only_changes(
    pa: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployed stack with an ArtifactsBucketName output, and a built Python environment in the cache
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(StackName="lake", TemplateBody=json.dumps(STACK_TEMPLATE))
    bucket = boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"][0]["Name"]
    cache = tmp_path / "cache"
    cache.mkdir()
    key = pa._env_cache_key(pa.PYTHON_DIST, pa.layer_pins(pa.PYTHON_ENV_PACKAGES))
    (cache / f"python-env-{key}.tar.gz").write_bytes(b"environment")
    argv = ["--stack-name", "lake", "--region", "us-east-1", "--cache-dir", str(cache)]

    # WHEN the script runs twice
    assert pa.main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert pa.main(argv) == 0
    second = capsys.readouterr().out.splitlines()

    # THEN the first run uploaded the script, the zip, the environment and the forecast's code; the second nothing
    keys = ["emr/python-env.tar.gz", "glue/datalake.zip", "glue/raw_to_processed.py", "ml/forecast/sourcedir.tar.gz"]
    assert [line.split()[:2] for line in first] == [["uploaded", f"s3://{bucket}/{key}"] for key in keys]
    assert [line.split()[:2] for line in second] == [["unchanged", f"s3://{bucket}/{key}"] for key in keys]
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key="emr/python-env.tar.gz")["Body"]
    assert body.read() == b"environment"


@mock_aws
def test_a_stack_that_is_not_deployed_is_one_clear_error(
    pa: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no stack, and a built Python environment in the cache
    cache = tmp_path / "cache"
    cache.mkdir()
    key = pa._env_cache_key(pa.PYTHON_DIST, pa.layer_pins(pa.PYTHON_ENV_PACKAGES))
    (cache / f"python-env-{key}.tar.gz").write_bytes(b"environment")

    # WHEN the script runs THEN it exits 1 with one line naming the stack
    assert pa.main(["--stack-name", "absent", "--region", "us-east-1", "--cache-dir", str(cache)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("package-artifacts: cannot read stack absent:")


# ---------------------------------------------------------------------------------------------- agreement


def _referenced_keys(template: dict[str, Any]) -> set[str]:
    """Objects (not the scratch folders, which end in `/`) the Glue job and the pipeline read from Artifacts."""
    job = json.dumps(template["Resources"]["RawToProcessedJob"])
    uris = set(ARTIFACT_URI.findall(job)) | set(ARTIFACT_URI.findall(ASL.read_text()))
    return {key for key in uris if not key.endswith("/")}


def _spark_submit_parameters() -> str:
    state = json.loads(ASL.read_text())["States"]["Run Spark On EMR Serverless"]
    return str(state["Parameters"]["JobDriver"]["SparkSubmit"]["SparkSubmitParameters"])


def test_every_artifact_the_job_and_pipeline_reference_is_one_the_script_builds(
    pa: ModuleType, template: dict[str, Any]
) -> None:
    # GIVEN the keys the Glue job and the pipeline's EMR task read from the artifacts bucket
    referenced = _referenced_keys(template)

    # THEN they are exactly the keys the script uploads
    built = {pa.GLUE_PREFIX + path.name for path in pa.GLUE_SCRIPTS.glob("*.py")}
    built |= {pa.DATALAKE_ZIP_KEY, pa.PYTHON_ENV_KEY, pa.SOURCEDIR_KEY.format(model="forecast")}
    assert referenced == built
    # AND the Glue job's script is no longer a local path packaged into SAM's deployment bucket
    script = template["Resources"]["RawToProcessedJob"]["Properties"]["Command"]["ScriptLocation"]
    assert script == {"Fn::Sub": "s3://${ArtifactsBucket}/glue/raw_to_processed.py"}


def test_the_spark_roles_may_read_every_artifact_and_nothing_of_the_deployment_bucket(
    pa: ModuleType, template: dict[str, Any]
) -> None:
    # GIVEN the policy both Spark roles share
    statements = template["Resources"]["SparkJobPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    readable = [
        resource["Fn::Sub"].replace("${ArtifactsBucket.Arn}/", "")
        for statement in statements
        if "s3:GetObject" in statement["Action"]
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
        if isinstance(resource, dict) and str(resource.get("Fn::Sub", "")).startswith("${ArtifactsBucket.Arn}/")
    ]

    # THEN every referenced Spark artifact matches a readable pattern, and SAM's managed bucket appears nowhere
    for key in _referenced_keys(template):
        if not key.startswith("ml/"):  # the SageMaker jobs' code, read by ForecastSageMakerRole
            assert any(fnmatch(key, pattern) for pattern in readable), key
    assert "samclisourcebucket" not in json.dumps(template)


def test_emr_serverless_runs_the_packed_interpreter_with_the_zip(pa: ModuleType, template: dict[str, Any]) -> None:
    # GIVEN the EMR task's spark-submit parameters
    confs = dict(item.split("=", 1) for item in re.findall(r"--conf (\S+)", _spark_submit_parameters()))

    # THEN the archive unpacks as ./environment, whose interpreter runs the driver and the executors
    interpreter = f"./environment/{pa.PYTHON_ENV_INTERPRETER}"
    assert confs["spark.archives"] == f"s3://${{ArtifactsBucket}}/{pa.PYTHON_ENV_KEY}#environment"
    assert confs["spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON"] == interpreter
    assert confs["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == interpreter
    assert confs["spark.executorEnv.PYSPARK_PYTHON"] == interpreter
    assert confs["spark.submit.pyFiles"] == f"s3://${{ArtifactsBucket}}/{pa.DATALAKE_ZIP_KEY}"
    # AND the interpreter and wheels are built for the application's architecture
    application = template["Resources"]["EmrServerlessApplication"]["Properties"]
    assert application["Architecture"] == "ARM64"
    assert "aarch64-unknown-linux-gnu" in pa.PYTHON_DIST.url
    assert pa.WHEEL_PLATFORM.endswith("_aarch64")


def test_glue_and_emr_get_the_same_pydantic_as_the_layer(pa: ModuleType, template: dict[str, Any]) -> None:
    # GIVEN the modules Glue installs for the job and the pins the EMR environment is built from
    arguments = template["Resources"]["RawToProcessedJob"]["Properties"]["DefaultArguments"]
    glue_modules = set(arguments["--additional-python-modules"].split(","))

    # THEN Glue's are the layer's pins, which the EMR environment also installs
    emr_pins = set(pa.layer_pins(pa.PYTHON_ENV_PACKAGES))
    assert glue_modules <= emr_pins


def test_the_forecast_role_may_read_the_sagemaker_code(template: dict[str, Any]) -> None:
    # GIVEN the SageMaker execution role's statements
    (policy,) = template["Resources"]["ForecastSageMakerRole"]["Properties"]["Policies"]
    readable = [
        str(resource.get("Fn::Sub", "")).replace("${ArtifactsBucket.Arn}/", "")
        for statement in policy["PolicyDocument"]["Statement"]
        if "s3:GetObject" in statement["Action"]
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
        if isinstance(resource, dict)
    ]
    # THEN every model's code the pipeline points its jobs at is readable by it
    for key in (k for k in _referenced_keys(template) if k.startswith("ml/")):
        assert any(fnmatch(key, pattern) for pattern in readable), key
