"""Stores usage records: each at once, before its response is sent, so a crash cannot lose a
delivered request's record; while the database is unavailable, on a background thread that retries
until the database takes them. `close` drains that queue, so a clean shutdown loses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from dataclasses import asdict

from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

from easel.usage.store import UsageRecord, UsageStore

log = logging.getLogger(__name__)

BATCH_SIZE = 200
MAX_RETRY_SECONDS = 30.0
# How long a response waits for its record to be stored; past that (a database that hangs rather
# than refuses) the record is stored or queued on its own and the response goes out.
RECORD_WAIT_SECONDS = 5.0


class UsageWriter:
    def __init__(self, store: UsageStore) -> None:
        self._store = store
        self._queue: queue.Queue[UsageRecord] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="easel-usage-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def record(self, record: UsageRecord) -> None:
        """Store a record before returning (off the event loop), or queue it for the background
        writer when the database is unavailable: a request that has its images never fails here."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.store_now, record), RECORD_WAIT_SECONDS)
        except TimeoutError:
            log.warning(
                "storing usage record %s takes over %.0fs; the response goes out meanwhile",
                record.request_id,
                RECORD_WAIT_SECONDS,
            )

    def store_now(self, record: UsageRecord) -> None:
        """Store a record on this thread; queue it when the database is unreachable."""
        try:
            self._store.write([record])
        except (OperationalError, InterfaceError):
            log.warning(
                "storing usage record %s failed; queued for retry", record.request_id, exc_info=True
            )
            self.submit(record)
        except DatabaseError as exc:
            _log_refused(record, exc)

    def submit(self, record: UsageRecord) -> None:
        """Queue a record; never blocks the caller on the database."""
        with self._idle:
            self._pending += 1
        self._queue.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record submitted so far is stored; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop. Records the database still refuses after `timeout`
        are logged in full, so an operator can replay them."""
        self._closing.set()
        self._thread.join(timeout)
        leftovers = []
        while True:
            try:
                leftovers.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for record in leftovers:
            log.error(
                "usage record not stored: %s",
                json.dumps(asdict(record), default=str),
                extra={"usage_record": record.request_id},
            )

    def _run(self) -> None:
        while not (self._closing.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not self._write(batch):
                for record in batch:  # hand back for close() to log
                    self._queue.put(record)
                return
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _write(self, batch: list[UsageRecord]) -> bool:
        """Retry with back-off while the database is unreachable; give up only when closing."""
        delay = 0.5
        while True:
            try:
                self._store.write(batch)
                return True
            except (OperationalError, InterfaceError):
                log.exception(
                    "storing %d usage records failed; retrying in %.1fs", len(batch), delay
                )
            except DatabaseError:
                # The database refused the data itself: store the others one by one, so a single
                # bad record cannot hold back the rest.
                self._write_one_by_one(batch)
                return True
            if self._closing.is_set() and delay >= 4:
                return False
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _write_one_by_one(self, batch: list[UsageRecord]) -> None:
        for record in batch:
            try:
                self._store.write([record])
            except DatabaseError as exc:
                _log_refused(record, exc)


def _log_refused(record: UsageRecord, error: DatabaseError) -> None:
    """The database refused the record's data itself: log it in full for an operator to replay."""
    log.error(
        "usage record refused by the database: %s",
        json.dumps(asdict(record), default=str),
        exc_info=error,
    )
