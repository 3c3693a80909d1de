"""Replay quarantined data into a deployed stack: the same functions `lakebox quarantine` and `lakebox replay` use.

    python scripts/replay.py --stack-name STACK quarantine [--dataset sales] [--since 2026-11-01] [--json]
    python scripts/replay.py --stack-name STACK replay --object _quarantine/sales/year=…/file.json.gz
    python scripts/replay.py --stack-name STACK replay --dataset sales corrected.jsonl [--of QUARANTINE_KEY]
    python scripts/replay.py --stack-name STACK originals --dataset sales --from 2026-11-01 [--to 2026-11-07]

The buckets and the manifests table come from the stack's outputs (`LandingBucketName`, `RawBucketName`,
`ManifestsTableName`). A replay is put in landing under `<dataset>/_replay/<UTC stamp>/<name>`, which the stack
ingests as any upload; the script waits for its manifest and marks it with `replay_of` and `replayed_at`.
`originals` re-ingests, with the current contract, the originals the raw zone kept for the dataset on those arrival
days (`datalake.replay.replay_originals`, ADR 0018): their outputs overwrite the first ingestion's.
Credentials and region come from the environment, as for the AWS CLI (`AWS_PROFILE`, `AWS_REGION`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "layers" / "common"))

from datalake.replay import (  # noqa: E402
    ReplayError,
    record_replay,
    replay_body,
    replay_key,
    scan_quarantine,
    upload_replay,
    wait_for_manifest,
)


def stack_outputs(session: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key."""
    stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def _since(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it; errors are one line on stderr."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    quarantine = sub.add_parser("quarantine", help="counts by dataset and reason, with samples")
    quarantine.add_argument("--dataset")
    quarantine.add_argument("--since", help="ISO date or time (UTC when no zone)")
    quarantine.add_argument("--samples", type=int, default=3)
    quarantine.add_argument("--json", action="store_true")
    replay = sub.add_parser("replay", help="land corrected records or a quarantine object again")
    replay.add_argument("file", nargs="?")
    replay.add_argument("--dataset")
    replay.add_argument("--of", help="the quarantine key FILE corrects (recorded in the manifest)")
    replay.add_argument("--object", action="append", default=[], metavar="QUARANTINE_KEY")
    replay.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each manifest")
    originals = sub.add_parser("originals", help="re-ingest a dataset's kept originals for a range of arrival days")
    originals.add_argument("--dataset", required=True)
    originals.add_argument("--from", dest="start", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")
    originals.add_argument("--to", dest="end", type=dt.date.fromisoformat, help="YYYY-MM-DD (default: --from)")
    args = parser.parse_args(argv)
    try:
        session = boto3.Session()
        outputs = stack_outputs(session, args.stack_name)
        s3 = session.client("s3")
        raw = outputs["RawBucketName"]
        if args.action == "quarantine":
            report = scan_quarantine(s3, raw, dataset=args.dataset, since=_since(args.since), samples=args.samples)
            document = {
                "counts": report.rows(),
                "samples": [vars(s) for s in report.samples],
                "objects": report.objects,
            }
            print(json.dumps(document, indent=2, default=str) if args.json else _text(document))
            return 0
        if args.action == "originals":
            return _replay_originals(session, outputs, args.dataset, args.start, args.end or args.start)
        if bool(args.file) == bool(args.object) or (args.file and not args.dataset):
            raise ReplayError("replay takes FILE with --dataset, or --object QUARANTINE_KEY (repeatable)")
        sources: list[tuple[str, str, bytes, str]] = []
        if args.file:
            path = Path(args.file)
            sources.append((args.of or f"file:{path.name}", args.dataset, path.read_bytes(), path.name))
        for key in args.object:
            dataset, body, name = replay_body(s3, raw, key)
            sources.append((key, dataset, body, name))
        table = session.resource("dynamodb").Table(outputs["ManifestsTableName"])
        for replay_of, dataset, body, name in sources:
            key = replay_key(dataset, name)
            object_id = upload_replay(s3, outputs["LandingBucketName"], key, body, replay_of)
            print(f"uploaded s3://{outputs['LandingBucketName']}/{key}; waiting for its ingestion", file=sys.stderr)
            manifest = wait_for_manifest(table, object_id, timeout=args.timeout)
            updated = record_replay(table, object_id, replay_of)
            print(
                json.dumps(
                    {
                        k: updated.get(k)
                        for k in (
                            "object_id",
                            "status",
                            "records_read",
                            "records_landed",
                            "records_quarantined",
                            "replay_of",
                            "replayed_at",
                        )
                    },
                    default=str,
                )
            )
            if int(manifest.get("records_quarantined", 0)):
                print(f"{object_id}: {manifest['records_quarantined']} records quarantined again", file=sys.stderr)
        return 0
    except (ReplayError, ClientError, BotoCoreError, OSError, KeyError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1


def _replay_originals(session: Any, outputs: dict[str, str], dataset: str, start: dt.date, end: dt.date) -> int:
    """Re-ingest the dataset's originals for the days, one JSON line per original; 1 when some wait for a restore."""
    from datalake.aws import AwsClients
    from datalake.replay import replay_originals
    from datalake.settings import Settings

    settings = Settings(
        raw_bucket=outputs["RawBucketName"],
        manifests_table=outputs["ManifestsTableName"],
        idempotency_table=outputs["IdempotencyTableName"],
    )
    report = replay_originals(dataset, start, end, settings=settings, clients=AwsClients.from_session(session))
    for replayed in report.replayed:
        print(json.dumps(vars(replayed), default=list))
    for key in report.archived:
        print(f"{key}: in S3 Glacier; restore it (aws s3api restore-object), then replay again", file=sys.stderr)
    return 1 if report.archived else 0


def _text(document: dict[str, Any]) -> str:
    lines = [f"{c['records']:>8,}  {c['dataset']:<12} {c['reason']}" for c in document["counts"]]
    lines += [
        f"  e.g. {s['source_key']}:{s['line']}  {s['reason']}  {str(s['raw'])[:100]}" for s in document["samples"]
    ]
    return "\n".join(lines) or "the quarantine is empty"


if __name__ == "__main__":
    sys.exit(main())
