"""`lakebox invoke`: a function run with an event, like `sam local invoke`, the event's object staged first."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from pydantic import ValidationError

from lakebox.errors import LakeboxError

if TYPE_CHECKING:
    from lakebox.app.source_api import SourceApiServer
    from lakebox.box import Lakebox


def invoke(
    box: Lakebox,
    function: str,
    event: Any,
    *,
    stage: str | None = None,
    event_path: str | None = None,
    notice: Callable[[str], None] = lambda _: None,
) -> Any:
    """Run `function` with `event` (its S3 object staged when needed); a rejected event names the sample events."""
    spec = box.stack.function(function)
    event = stage_object(box, event, stage, event_path, notice)
    try:
        return box.lambdas.invoke(spec.logical_id, event)
    except ValidationError as exc:
        problems: list[Any] = list(exc.errors())
        first: dict[str, Any] = dict(problems[0]) if problems else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the event"
        folder = box.root / "events" / spec.code_dir.name
        samples = sorted(str(p.relative_to(box.root)) for p in folder.glob("*.json")) or ["events/"]
        raise LakeboxError(
            f"{spec.logical_id} rejected the event ({exc.error_count()} problem(s); {where}: {first.get('msg')}); "
            f"its sample events: {', '.join(samples)}"
        ) from exc


def stage_object(
    box: Lakebox, event: Any, stage: str | None, event_path: str | None, notice: Callable[[str], None]
) -> Any:
    """Point an S3 event at an object that exists: stage `stage` (or the sample's body file) under its key.

    A sample event `events/<function>/<name>.json` whose object is not in the lake is staged from
    `events/<function>/<name>.body.*` when there is one, as `sam local invoke` users would upload it first.
    """
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or "object" not in detail or "bucket" not in detail:
        if stage:
            raise LakeboxError("--stage needs an S3 event that names a bucket and an object")
        return event
    key = unquote_plus(str(detail["object"].get("key", "")))
    bucket = str(detail["bucket"].get("name", ""))
    landing = box.bucket("LandingBucket")
    s3 = box.session.client("s3")
    if stage is None:
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return event
        except s3.exceptions.ClientError:
            body = sample_body(event_path)
            if body is not None:
                notice(f"staged {body} as s3://{landing}/{key}")
                return stage_object(box, event, str(body), None, notice)
            raise LakeboxError(
                f"the event names s3://{bucket}/{key}, which is not in the local lake: pass --stage FILE to upload "
                "a file under that key first (or use `lakebox put`, which uploads and delivers the event)"
            ) from None
    path = Path(stage)
    if not path.is_file():
        raise LakeboxError(f"{path}: no such file to stage")
    target = (
        bucket
        if bucket
        in {str(box.stack.ref(lid)) for lid, r in box.stack.resources.items() if r["Type"] == "AWS::S3::Bucket"}
        else landing
    )
    response = s3.put_object(Bucket=target, Key=key, Body=path.read_bytes())
    detail["bucket"]["name"] = target
    detail["object"]["size"] = path.stat().st_size
    detail["object"]["etag"] = str(response["ETag"]).strip('"')
    if response.get("VersionId"):
        detail["object"]["version-id"] = response["VersionId"]
    else:
        detail["object"].pop("version-id", None)
    event["resources"] = [f"arn:aws:s3:::{target}"]
    return event


def sample_body(event_path: str | None) -> Path | None:
    """The body file beside a sample event (`<name>.body.*`), if there is one."""
    if not event_path or event_path == "-":
        return None
    path = Path(event_path)
    return next(iter(sorted(path.parent.glob(f"{path.stem}.body.*"))), None)


def implied_parameters(event: Any, given: Mapping[str, str]) -> dict[str, str]:
    """Template parameters the event itself calls for, unless given: a Firehose transformation event needs the stack
    that delivers streams through Firehose."""
    if isinstance(event, dict) and "deliveryStreamArn" in event and "StreamDelivery" not in given:
        return {"StreamDelivery": "firehose"}
    return {}


def reads_source_api(function: str) -> bool:
    """Whether the template's `function` (logical id) is configured with the SourceApiBaseUrl parameter."""
    from lakebox.cfn.template import load_template
    from lakebox.home import find_root

    resource = load_template(find_root() / "template.yaml")["Resources"].get(function, {})
    return "'Ref': 'SourceApiBaseUrl'" in str(resource.get("Properties", {}).get("Environment", {}))


@contextlib.contextmanager
def sample_source_api(function: str, given: Mapping[str, str]) -> Iterator[SourceApiServer | None]:
    """The local sample source API, served while a function that pulls from it runs (unless its URL is given)."""
    if "SourceApiBaseUrl" in given or not reads_source_api(function):
        yield None
        return
    from lakebox.app.sample import SampleSpec
    from lakebox.app.source_api import API_ID_OFFSET, sample_sales, serve

    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    with serve(sample_sales(SampleSpec(end=end), 2_000, start=API_ID_OFFSET)) as api:
        yield api
