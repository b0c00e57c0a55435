"""The batch sizer on given throughput curves: it finds the fastest batch size, prefers the smaller
of two nearly equal ones, follows a change in the curve, and stays out of the way when disabled.
(The curves stand in for a device's measured speed, which a test cannot choose.)"""

from __future__ import annotations

from collections.abc import Callable

from easel.engine.batch_sizing import REPROBE_BATCHES, BatchSizer
from easel.engine.jobs import BatchKey

KEY = BatchKey(256, 256, 4, 0.0, False)
OTHER_KEY = BatchKey(512, 512, 4, 0.0, False)


def run_full_batches(
    sizer: BatchSizer, key: BatchKey, budget: int, curve: Callable[[int], float], batches: int
) -> list[int]:
    """A queue that is always deeper than the limit: every batch holds exactly the limit. `curve`
    gives images per second at each batch size. Returns the sizes run."""
    sizes = []
    for _ in range(batches):
        size = sizer.limit(key, budget)
        sizes.append(size)
        sizer.record(key, size, size / curve(size))
    return sizes


def peaks_at_4(size: int) -> float:
    # Shaped like the tiny CPU pipeline: 12.5 images/s alone, best at 4, worse at 8.
    return {1: 12.5, 2: 20.0, 4: 25.0, 8: 21.0}[size]


def test_starts_at_the_budget_and_settles_on_the_fastest_size() -> None:
    sizer = BatchSizer()
    sizes = run_full_batches(sizer, KEY, 8, peaks_at_4, 30)
    assert sizes[0] == 8
    assert set(sizes[-10:]) == {4}
    snapshot = sizer.snapshot()[KEY.label]
    assert snapshot["limit"] == 4
    # 8 first, then its half; 4 beat 8, so 4's half too; 2 lost to 4, so 1 was never needed.
    assert snapshot["images_per_second"] == {2: 20.0, 4: 25.0, 8: 21.0}


def test_keeps_the_full_budget_when_bigger_is_faster() -> None:
    sizer = BatchSizer()
    sizes = run_full_batches(sizer, KEY, 8, lambda size: 10.0 * size, 30)
    assert set(sizes[-10:]) == {8}


def test_prefers_the_smaller_of_nearly_equal_sizes() -> None:
    sizer = BatchSizer()
    # 8 is 2% faster than 4 and 2 is far slower: within the tolerance, 4 wins (less latency).
    curve = {1: 10.0, 2: 15.0, 4: 20.0, 8: 20.4}
    sizes = run_full_batches(sizer, KEY, 8, curve.__getitem__, 30)
    assert set(sizes[-10:]) == {4}


def test_follows_a_change_in_speed_after_reprobing() -> None:
    sizer = BatchSizer()
    run_full_batches(sizer, KEY, 8, peaks_at_4, REPROBE_BATCHES - 1)
    assert sizer.limit(KEY, 8) == 4
    # The machine changes (say another tenant leaves): now 8 is clearly fastest.
    sizes = run_full_batches(sizer, KEY, 8, lambda size: 10.0 * size, 30)
    assert set(sizes[-10:]) == {8}


def test_classes_are_sized_apart_and_partial_batches_count() -> None:
    sizer = BatchSizer()
    run_full_batches(sizer, KEY, 8, peaks_at_4, 30)
    assert sizer.limit(OTHER_KEY, 6) == 6  # a new class starts at its own budget
    # A shallow queue makes batches of 3 at the other class; they are measured like any other.
    for _ in range(3):
        sizer.record(OTHER_KEY, 3, 3 / 30.0)
    assert sizer.limit(KEY, 8) == 4
    assert sizer.limit(OTHER_KEY, 6) == 6
    assert 3 in sizer.snapshot()[OTHER_KEY.label]["images_per_second"]


def test_fixed_size_always_gives_the_budget() -> None:
    sizer = BatchSizer(adaptive=False)
    sizes = run_full_batches(sizer, KEY, 8, peaks_at_4, 20)
    assert set(sizes) == {8}
    assert sizer.snapshot() == {}


def test_running_out_of_memory_caps_the_class_until_the_next_reprobe() -> None:
    sizer = BatchSizer()
    assert sizer.limit(KEY, 8) == 8
    assert sizer.record_out_of_memory(KEY, 8) == 4
    # Bigger is faster, but 8 did not fit: the sizer climbs no higher than 7.
    sizes = run_full_batches(sizer, KEY, 8, lambda size: 10.0 * size, 40)
    assert max(sizes) == 7 and set(sizes[-10:]) == {7}
    # At the reprobe the ceiling lifts (the memory may be free now) and 8 is tried again.
    sizes = run_full_batches(sizer, KEY, 8, lambda size: 10.0 * size, REPROBE_BATCHES)
    assert set(sizes[-10:]) == {8}
