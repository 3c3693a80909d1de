"""`lakebox up`'s watch loop: every few seconds, deliver the events of new objects and save the lake if it changed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lakebox.box import summary_row

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.services.eventbus import Delivery

OnDelivery = Callable[[str, "Delivery", dict[str, Any]], None]
"""Called with (key, delivery, its summary row) for each delivery of a new object."""
OnError = Callable[[Exception], None]
"""Called with what failed in one round; the loop goes on."""


def watch_round(box: Lakebox, on_delivery: OnDelivery) -> None:
    """One round: deliver the new objects' events, then save the lake if a request changed it."""
    for _, key, deliveries in box.deliver_new_objects():
        for delivery in deliveries:
            on_delivery(key, delivery, summary_row(key, delivery))
    box.save_if_changed()


def start_watch(
    box: Lakebox, poll: float, stopping: threading.Event, on_delivery: OnDelivery, on_error: OnError
) -> threading.Thread:
    """The watch as a daemon thread, one round every `poll` seconds until `stopping` is set."""

    def watch() -> None:
        while not stopping.wait(poll):
            try:
                watch_round(box, on_delivery)
            except Exception as exc:  # noqa: BLE001 - the watch keeps running; what failed is reported
                on_error(exc)

    watcher = threading.Thread(target=watch, name="lakebox-watch", daemon=True)
    watcher.start()
    return watcher
