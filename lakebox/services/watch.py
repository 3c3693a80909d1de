"""S3 "Object Created" events for new object versions in the buckets that send their events to EventBridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakebox.cfn.stack import Stack
from lakebox.services.eventbus import Delivery, EventBus, object_created_event

if TYPE_CHECKING:
    import boto3

Version = tuple[str, str, str, str]
"""`(bucket, key, version id or "null", ETag)` of one object version."""


class ObjectWatch:
    """New object versions in the buckets that send their events to EventBridge, turned into "Object Created".

    Whoever writes an object (`lakebox put`, boto3, the AWS CLI, awswrangler, a function such as the scheduled
    pull) raises an event in AWS; the watch finds the new versions by comparing version listings. In a bucket
    without versioning an overwrite is a new version too (its ETag or modification time changes).
    """

    def __init__(self, stack: Stack, session: boto3.Session) -> None:
        self.stack = stack
        self.session = session
        self.buckets = [
            str(stack.ref(lid))
            for lid, resource in stack.resources.items()
            if resource["Type"] == "AWS::S3::Bucket"
            and stack.active(lid)
            and (stack.resolve(resource.get("Properties", {}).get("NotificationConfiguration")) or {})
            .get("EventBridgeConfiguration", {})
            .get("EventBridgeEnabled")
        ]
        self._seen = self._versions()

    def _versions(self) -> dict[Version, dict[str, Any]]:
        s3 = self.session.client("s3")
        found: dict[Version, dict[str, Any]] = {}
        for bucket in self.buckets:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for version in page.get("Versions", []):
                    etag = str(version.get("ETag", "")).strip('"')
                    found[(bucket, version["Key"], str(version.get("VersionId") or "null"), etag)] = dict(version)
        return found

    def listing(self) -> set[Version]:
        """Every object version in the watched buckets now."""
        return set(self._versions())

    def new_versions(self) -> list[tuple[Version, str, dict[str, Any]]]:
        """`(version, key, "Object Created" event)` for each version written since the watch started or last looked."""
        current = self._versions()
        fresh = sorted(
            (v for v in current if v not in self._seen or current[v]["LastModified"] != self._seen[v]["LastModified"]),
            key=lambda v: (current[v]["LastModified"], v),
        )
        self._seen = current
        return [
            (
                version,
                version[1],
                object_created_event(
                    version[0],
                    version[1],
                    version_id=None if version[2] == "null" else version[2],
                    etag=version[3],
                    size=int(current[version]["Size"]),
                ),
            )
            for version in fresh
        ]

    def new_events(self) -> list[tuple[str, dict[str, Any]]]:
        """`(key, "Object Created" event)` for each version written since the watch started (or last reported)."""
        return [(key, event) for _, key, event in self.new_versions()]

    def deliver(self, bus: EventBus) -> list[tuple[str, Delivery]]:
        """Send the new objects' events through the rules; return `(key, delivery)` pairs."""
        out: list[tuple[str, Delivery]] = []
        for key, event in self.new_events():
            out.extend((key, delivery) for delivery in bus.put(event))
        return out
