"""One memory budget for every model the engine keeps loaded on its device.

Any model that holds weights (a diffusion pipeline, a background-matting model, a prompt-rewriting
LLM) takes part through the small `BudgetedModel` protocol: it says what it holds and can release
it. Before each use the model is acquired from the `MemoryBudget`, which waits until it fits:
resident already, or room made by releasing the least recently used models that are not in use.
A model in use is never released, so no batch loses its weights midway. Waiters are served in
arrival order, and a resident model that wants to run again queues behind them: a model that keeps
getting requests yields its memory after its current batch instead of starving the one waiting.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch

log = logging.getLogger(__name__)

# Room left outside the budget for activations, the VAE decode, other processes and the OS: a
# fifth of the device, at least 2 GiB, at most half.
_MARGIN_SHARE = 0.2
_MIN_MARGIN_BYTES = 2 * 1024**3


class BudgetedModel(Protocol):
    """A model whose weights count against the budget."""

    @property
    def name(self) -> str:
        """How the budget's state and log lines call it."""
        ...

    def resident_bytes(self) -> int:
        """Bytes it holds on the budget's device now; 0 when nothing is loaded. Called under the
        budget's lock: a stored number, not a measurement."""
        ...

    def release(self) -> None:
        """Drop the weights (called only while the model is not in use); load again on next use."""
        ...


@dataclass(frozen=True)
class Resident:
    """A model the budget counts: its bytes (its reservation while it loads), when it was last
    used (seconds since the epoch) and whether it is in use now."""

    name: str
    bytes: int
    last_used: float
    in_use: bool


@dataclass(frozen=True)
class MemoryState:
    total_bytes: int
    used_bytes: int
    # The most the residents held at once: above the total only when one model alone is bigger.
    peak_bytes: int
    waiting: int  # models waiting for room
    evictions: int  # models released to make room, since start
    residents: tuple[Resident, ...]  # least recently used first


@dataclass
class _Entry:
    model: BudgetedModel
    bytes: int
    last_used: float
    users: int = 0


def device_memory_bytes(device: torch.device) -> int:
    """What the device has: an accelerator's memory; for the CPU, the machine's RAM."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget_bytes(device: torch.device) -> int:
    """The budget when none is set: the device's memory less the margin."""
    total = device_memory_bytes(device)
    margin = min(max(int(total * _MARGIN_SHARE), _MIN_MARGIN_BYTES), total // 2)
    return total - margin


class MemoryBudget:
    """How many bytes of device memory the models may hold together, and which hold what. Thread
    safe: models are acquired on their own threads and released by whoever needs their room."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self._changed = threading.Condition()
        # By the model's identity: a model need not be hashable.
        self._entries: dict[int, _Entry] = {}
        self._waiting: deque[object] = deque()
        self._peak = 0
        self._evictions = 0

    def fits(self, load_bytes: int) -> bool:
        """A model of this size fits in the budget alone (else it runs offloaded, or over it)."""
        return load_bytes <= self.total_bytes

    def acquire(self, model: BudgetedModel, load_bytes: int) -> None:
        """Wait until `model` may run, then mark it in use until `done(model)`. A model that is not
        resident needs `load_bytes` (the whole budget at most): the least recently used idle models
        are released for it, and it waits while the models in use hold the room it needs. Loading
        it is the caller's job, after this returns."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            try:
                while True:
                    if self._waiting[0] is ticket:
                        victims = self._victims(model, load_bytes)
                        if victims == []:
                            break
                        if victims:
                            self._release(victims, model)
                            continue
                    self._changed.wait()
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()
            self._use(model, load_bytes)

    def try_acquire(self, model: BudgetedModel, load_bytes: int) -> bool:
        """`acquire` only if `model` fits now without releasing anything and nothing waits; for
        loading at start what fits."""
        with self._changed:
            if self._waiting or self._victims(model, load_bytes) != []:
                return False
            self._use(model, load_bytes)
            return True

    def done(self, model: BudgetedModel) -> None:
        """`model`'s use is over: it may be released from now on. Its bytes are measured again (a
        load replaces the reservation with what it really holds; a failed one holds nothing)."""
        with self._changed:
            entry = self._entries.get(id(model))
            if entry is None:
                return
            entry.users -= 1
            entry.last_used = time.time()
            measured = model.resident_bytes()
            if measured:
                entry.bytes = measured
                self._note_peak()
            elif not entry.users:
                del self._entries[id(model)]
            self._changed.notify_all()

    @contextmanager
    def use(self, model: BudgetedModel, load_bytes: int) -> Iterator[None]:
        """`acquire`, and `done` when the block ends: for a model used in one stretch."""
        self.acquire(model, load_bytes)
        try:
            yield
        finally:
            self.done(model)

    def state(self) -> MemoryState:
        with self._changed:
            entries = sorted(self._entries.values(), key=lambda entry: entry.last_used)
            return MemoryState(
                total_bytes=self.total_bytes,
                used_bytes=self._used(),
                peak_bytes=self._peak,
                waiting=len(self._waiting),
                evictions=self._evictions,
                residents=tuple(
                    Resident(entry.model.name, entry.bytes, entry.last_used, entry.users > 0)
                    for entry in entries
                ),
            )

    def _used(self) -> int:
        return sum(entry.bytes for entry in self._entries.values())

    def _note_peak(self) -> None:
        self._peak = max(self._peak, self._used())

    def _victims(self, model: BudgetedModel, load_bytes: int) -> list[BudgetedModel] | None:
        """The idle models to release so that `model` fits, least recently used first: [] when it
        fits already, None when releasing every idle model would not be enough yet."""
        if id(model) in self._entries:
            return []
        shortfall = min(load_bytes, self.total_bytes) - (self.total_bytes - self._used())
        victims: list[BudgetedModel] = []
        for entry in sorted(self._entries.values(), key=lambda entry: entry.last_used):
            if shortfall <= 0:
                break
            if not entry.users:
                victims.append(entry.model)
                shortfall -= entry.bytes
        return victims if shortfall <= 0 else None

    def _release(self, victims: list[BudgetedModel], needed_by: BudgetedModel) -> None:
        """Release `victims` for `needed_by`. Called holding the lock, with the caller first in
        line; the releases themselves run without the lock, which a garbage collection can hold up
        for a while."""
        for victim in victims:
            entry = self._entries.pop(id(victim))
            self._evictions += 1
            log.info(
                "releasing %s (%d MB, idle) to make room for %s",
                victim.name,
                entry.bytes // 1_000_000,
                needed_by.name,
            )
        self._changed.release()
        try:
            for victim in victims:
                try:
                    victim.release()
                except Exception:  # the model waiting must not fail because another could not
                    log.exception("releasing %s failed", victim.name)
        finally:
            self._changed.acquire()

    def _use(self, model: BudgetedModel, load_bytes: int) -> None:
        entry = self._entries.get(id(model))
        if entry is None:
            # Until its load is measured, a model holds its reservation.
            entry = self._entries[id(model)] = _Entry(
                model, min(load_bytes, self.total_bytes), time.time()
            )
        entry.users += 1
        entry.last_used = time.time()
        self._note_peak()
