"""S3 "Object Created" events for new object versions in the buckets that send their events to EventBridge."""

from __future__ import annotations

from typing import Any

from lakebox.eventbus import Delivery, EventBus, object_created_event
from lakebox.stack import Stack


class ObjectWatch:
    """New object versions in the buckets that send their events to EventBridge, turned into "Object Created".

    Objects a function writes (the scheduled pull's landing object) raise events in AWS as any upload does; the
    watch finds them by comparing version listings before and after.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
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

    def _versions(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        s3 = self.stack.session.client("s3")
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for bucket in self.buckets:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for version in page.get("Versions", []):
                    key = (bucket, version["Key"], str(version.get("VersionId") or "null"))
                    found[key] = dict(version)
        return found

    def new_events(self) -> list[tuple[str, dict[str, Any]]]:
        """`(key, "Object Created" event)` for each version written since the watch started (or last reported)."""
        current = self._versions()
        fresh = sorted(set(current) - set(self._seen), key=lambda k: (current[k]["LastModified"], k))
        self._seen = current
        return [
            (
                key,
                object_created_event(
                    bucket,
                    key,
                    version_id=None if version == "null" else version,
                    etag=str(current[(bucket, key, version)]["ETag"]),
                    size=int(current[(bucket, key, version)]["Size"]),
                ),
            )
            for bucket, key, version in fresh
        ]

    def deliver(self, bus: EventBus) -> list[tuple[str, Delivery]]:
        """Send the new objects' events through the rules; return `(key, delivery)` pairs."""
        out: list[tuple[str, Delivery]] = []
        for key, event in self.new_events():
            out.extend((key, delivery) for delivery in bus.put(event))
        return out
