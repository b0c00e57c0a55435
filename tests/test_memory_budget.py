"""One memory budget for every loaded model: pipelines load on first use, the least recently used
idle one is released when another needs its room, and requests wait for the room instead of
failing. In-process engines on real tiny pipelines (CPU), the budget's own rules on stand-in
models, and a running `easel serve` read by `easel models list --server`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
import torch
from diffusers import DiffusionPipeline
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ByteSize

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.catalog.defaults import DEFAULT_MODELS
from easel.catalog.spec import QualityPreset
from easel.engine import loader
from easel.engine.engine import Engine
from easel.engine.memory import MemoryBudget, device_memory_bytes
from easel.engine.pipeline_weights import estimate_bytes, loaded_bytes
from easel.engine.types import ModelState
from easel.errors import DeadlineExceededError
from easel.settings import Settings, SettingsError, load_settings
from tests.cli import run_easel
from tests.server import create_key, start_server


@pytest.fixture(scope="module")
def other_sd(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights in another directory: another source, so another pipeline."""
    copy = tmp_path_factory.mktemp("other") / "tiny-sd"
    shutil.copytree(tiny_sd, copy)
    return copy


@pytest.fixture(scope="module")
def pipeline_bytes(tiny_sd: Path) -> int:
    """What one tiny pipeline holds loaded on the CPU."""
    return estimate_bytes(tiny_sd, torch.float32)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the engine loads, in order: the real loader runs, observed."""
    seen: list[str] = []

    def observed(
        source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
    ) -> DiffusionPipeline:
        seen.append(source)
        return loader.load_pipeline(source, device, dtype, decoder)

    # The worker's own reference: that is the one it calls.
    monkeypatch.setattr("easel.engine.worker.load_pipeline", observed)
    return seen


def spec(name: str, source: Path) -> ModelSpec:
    # Two steps: the tests are about which weights are where, not about the images.
    return ModelSpec(
        name=name,
        source=str(source),
        qualities={"standard": QualityPreset(steps=2, guidance_scale=1)},
    )


def two_sources(tiny_sd: Path, other_sd: Path) -> Catalog:
    return Catalog([spec("model-a", tiny_sd), spec("model-b", other_sd)])


def engine_with_budget(catalog: Catalog, budget_bytes: int) -> Engine:
    return Engine(catalog, config=Settings(memory_budget=ByteSize(budget_bytes)).scheduler_config())


def plan(catalog: Catalog, model: str) -> GenerationPlan:
    return catalog.get(model).plan(
        prompt=f"a cat for {model}", n=1, size="256x256", quality=None, style=None
    )


def resident_names(engine: Engine) -> list[str]:
    return [resident.name for resident in engine.memory_budget.state().residents]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("40GB", 40 * 10**9), ("300MB", 300 * 10**6), ("1.5GiB", 3 * 2**29), ("123456", 123456)],
)
def test_the_budget_takes_sizes_with_units(given: str, expected: int) -> None:
    assert (
        load_settings({"memory_budget": given}).scheduler_config().memory_budget_bytes == expected
    )


@pytest.mark.parametrize("given", ["lots", "0", "-5GB", "40 parsecs"])
def test_a_bad_budget_is_refused_in_one_line(given: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"memory_budget": given}, {"memory_budget": "--memory-budget"})
    assert str(refused.value) == (
        f"--memory-budget={given!r}: expected a size such as 40GB, 300MB or 1.5GiB, or a number "
        "of bytes above 0"
    )


def test_unset_the_budget_is_the_machines_memory_less_a_margin() -> None:
    cpu = torch.device("cpu")
    engine = Engine(Catalog([]), config=Settings().scheduler_config(), device=cpu)
    ram = device_memory_bytes(cpu)
    assert ram // 2 <= engine.memory_budget.total_bytes <= ram - 2 * 1024**3


@pytest.mark.anyio
async def test_names_on_one_source_load_once_and_hold_one_copy(
    tiny_sd: Path, loads: list[str], pipeline_bytes: int
) -> None:
    names = ["one", "two", "three", "four"]
    catalog = Catalog([spec(name, tiny_sd) for name in names])
    # Room for one copy, not for two: four copies could not be held.
    engine = engine_with_budget(catalog, pipeline_bytes * 3 // 2)
    try:
        await asyncio.gather(*(engine.generate(plan(catalog, name), seed=1) for name in names))
        state = engine.memory_budget.state()
        pipe = engine.pipeline("one")
    finally:
        await engine.shutdown()
    assert loads == [str(tiny_sd)]
    assert [resident.name for resident in state.residents] == ["one/two/three/four"]
    assert state.used_bytes == loaded_bytes(pipe) and state.evictions == 0
    assert engine.memory().models == {"one/two/three/four": tuple(names)}


@pytest.mark.anyio
async def test_alternating_requests_within_a_budget_for_one_all_succeed_one_model_at_a_time(
    tiny_sd: Path, other_sd: Path, loads: list[str], pipeline_bytes: int
) -> None:
    catalog = two_sources(tiny_sd, other_sd)
    budget = pipeline_bytes * 3 // 2
    engine = engine_with_budget(catalog, budget)
    residents = []
    try:
        for model in ["model-a", "model-b", "model-a", "model-b"]:
            generation = await engine.generate(plan(catalog, model), seed=3)
            assert len(generation.images) == 1
            residents.append(resident_names(engine))
        state = engine.memory_budget.state()
    finally:
        await engine.shutdown()
    assert residents == [["model-a"], ["model-b"], ["model-a"], ["model-b"]]
    # The evicted pipeline loaded again each time it was asked for.
    assert loads == [str(tiny_sd), str(other_sd)] * 2
    assert state.evictions == 3
    # Both were never held at once, not even for a moment: the most ever held fits the budget.
    assert pipeline_bytes <= state.peak_bytes <= budget


@pytest.mark.anyio
async def test_an_evicted_pipeline_is_unloaded_and_reloads_on_its_next_request(
    tiny_sd: Path, other_sd: Path, pipeline_bytes: int
) -> None:
    catalog = two_sources(tiny_sd, other_sd)
    engine = engine_with_budget(catalog, pipeline_bytes * 3 // 2)
    try:
        first = await engine.generate(plan(catalog, "model-a"), seed=5)
        await engine.generate(plan(catalog, "model-b"), seed=5)
        assert engine.states() == {"model-a": ModelState.UNLOADED, "model-b": ModelState.READY}
        again = await engine.generate(plan(catalog, "model-a"), seed=5)
        assert engine.states() == {"model-a": ModelState.READY, "model-b": ModelState.UNLOADED}
    finally:
        await engine.shutdown()
    # The reloaded weights make the same image.
    assert (first.images[0].pixels == again.images[0].pixels).all()


@pytest.mark.anyio
async def test_no_request_is_lost_while_two_models_take_turns(
    tiny_sd: Path, other_sd: Path, pipeline_bytes: int
) -> None:
    catalog = two_sources(tiny_sd, other_sd)
    budget = pipeline_bytes * 3 // 2
    engine = engine_with_budget(catalog, budget)
    models = ["model-a", "model-b"] * 4
    try:
        generations = await asyncio.gather(
            *(engine.generate(plan(catalog, model), seed=i) for i, model in enumerate(models))
        )
        state = engine.memory_budget.state()
    finally:
        await engine.shutdown()
    assert [len(generation.images) for generation in generations] == [1] * len(models)
    assert state.evictions >= 1 and state.peak_bytes <= budget and state.waiting == 0
    # Requests that waited for room count it as queue time.
    assert max(generation.timing.queued_seconds for generation in generations) > 0


@pytest.mark.anyio
async def test_a_pipeline_whose_requests_gave_up_while_it_waited_for_room_keeps_serving(
    tiny_sd: Path, pipeline_bytes: int
) -> None:
    catalog = Catalog([spec("waits", tiny_sd)])
    engine = engine_with_budget(catalog, pipeline_bytes * 3 // 2)
    # Another model (a stand-in for a matting model) holds the whole budget while it runs.
    other = StandIn("other", engine.memory_budget.total_bytes)
    await asyncio.to_thread(engine.memory_budget.acquire, other, other.size)
    other.loaded = True
    try:
        with pytest.raises(DeadlineExceededError):
            await engine.generate(plan(catalog, "waits"), seed=1, deadline_seconds=0.5)
        engine.memory_budget.done(other)
        # The pipeline now loads for a request that is gone; its batcher must stay up for the next.
        await asyncio.to_thread(_settled, engine)
        await asyncio.sleep(0.1)
        batcher = engine.workers["waits"].scheduler._task
        assert batcher is not None and not batcher.done()
        generation = await engine.generate(plan(catalog, "waits"), seed=1)
    finally:
        await engine.shutdown()
    assert len(generation.images) == 1 and not other.loaded


@pytest.mark.anyio
async def test_a_pipeline_bigger_than_the_whole_budget_is_still_served_with_a_warning(
    tiny_sd: Path, pipeline_bytes: int, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog([spec("big", tiny_sd)])
    budget = pipeline_bytes // 4
    engine = engine_with_budget(catalog, budget)
    try:
        with caplog.at_level(logging.WARNING, logger="easel.engine.worker"):
            generation = await engine.generate(plan(catalog, "big"), seed=1)
        state = engine.memory()
    finally:
        await engine.shutdown()
    assert len(generation.images) == 1
    assert any("more than the whole memory budget" in r.getMessage() for r in caplog.records)
    # On a CPU it is loaded whole, not offloaded: the budget shows it above its total.
    assert state.offloaded == frozenset() and state.budget.used_bytes > budget


@pytest.mark.anyio
async def test_at_start_only_what_fits_loads_and_the_rest_waits_unloaded(
    tiny_sd: Path, other_sd: Path, pipeline_bytes: int
) -> None:
    catalog = two_sources(tiny_sd, other_sd)
    engine = engine_with_budget(catalog, pipeline_bytes * 3 // 2)
    engine.start()
    try:
        # The start loads run on the pipelines' threads: wait for both to have decided.
        await asyncio.to_thread(_settled, engine)
        states = sorted(state.value for state in engine.states().values())
        assert states == ["ready", "unloaded"]
        assert engine.memory_budget.state().evictions == 0
    finally:
        await engine.shutdown()


def _settled(engine: Engine) -> None:
    deadline = time.monotonic() + 60
    while ModelState.LOADING in engine.states().values():
        assert time.monotonic() < deadline, engine.states()
        time.sleep(0.01)


class StandIn:
    """A model other than a pipeline (a matting model, a prompt rewriter) as the budget sees it."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.loaded = False

    def resident_bytes(self) -> int:
        return self.size if self.loaded else 0

    def release(self) -> None:
        self.loaded = False


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_busy_model_yields_to_a_waiting_one_after_its_current_use() -> None:
    budget = MemoryBudget(10)
    a, b = StandIn("a", 6), StandIn("b", 6)
    order: list[str] = []

    def use(model: StandIn) -> None:
        budget.acquire(model, model.size)
        model.loaded = True
        order.append(model.name)

    budget.acquire(a, a.size)  # a runs a batch
    a.loaded = True
    b_waits = threading.Thread(target=use, args=(b,), daemon=True)
    b_waits.start()
    _until(lambda: budget.state().waiting == 1)
    # a has more work, but b asked first: a queues behind b although it is resident.
    a_again = threading.Thread(target=use, args=(a,), daemon=True)
    a_again.start()
    _until(lambda: budget.state().waiting == 2)
    budget.done(a)  # a's batch is over
    _until(lambda: order == ["b"])
    assert [r.name for r in budget.state().residents] == ["b"] and a.resident_bytes() == 0
    assert budget.state().waiting == 1  # a waits for b's use to end; nobody is stuck
    budget.done(b)
    b_waits.join(10)
    a_again.join(10)
    assert order == ["b", "a"] and (a.loaded, b.loaded) == (True, False)
    assert budget.state().peak_bytes <= 10 and budget.state().evictions == 2


def test_the_least_recently_used_idle_model_goes_first_and_one_in_use_never() -> None:
    budget = MemoryBudget(10)
    old, recent, busy = StandIn("old", 3), StandIn("recent", 3), StandIn("busy", 3)
    for model in (old, recent, busy):
        with budget.use(model, model.size):
            model.loaded = True
    budget.acquire(busy, busy.size)
    with budget.use(StandIn("new", 3), 3):
        assert (old.loaded, recent.loaded, busy.loaded) == (False, True, True)
    assert budget.state().peak_bytes <= 10


def test_a_running_server_shows_what_it_holds_on_readyz_metrics_and_models_list(
    tiny_sd: Path, other_sd: Path, pipeline_bytes: int, tmp_path: Path
) -> None:
    budget = pipeline_bytes * 3 // 2
    # dall-e-3 on its own pipeline; every other built-in name shares dall-e-2's.
    sources = dict.fromkeys(DEFAULT_MODELS, tiny_sd) | {"dall-e-3": other_sd}
    models = [arg for name, source in sources.items() for arg in ("--model", f"{name}={source}")]
    server = start_server(tmp_path, *models, "--memory-budget", str(budget))
    try:
        client = openai.OpenAI(
            api_key=create_key(tmp_path), base_url=server.base_url + "/v1", max_retries=0
        )
        client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1024")
        client.images.generate(model="dall-e-2", prompt="a cat", size="256x256")
        readiness = httpx.get(server.base_url + "/readyz").json()
        metrics = {
            (sample.name, tuple(sorted(sample.labels.values()))): sample.value
            for family in text_string_to_metric_families(
                httpx.get(server.base_url + "/metrics").text
            )
            for sample in family.samples
        }
        listed = run_easel("models", "list", "--server", server.base_url)
    finally:
        server.stop()
    # dall-e-3 made room for dall-e-2 and waits, unloaded: the server is still ready.
    assert readiness["status"] == "ready"
    assert readiness["models"]["dall-e-2"] == "ready"
    assert readiness["models"]["dall-e-3"] == "unloaded"
    memory = readiness["memory"]
    # Each pipeline tries to load at start on its own thread: whichever won that race holds the
    # budget, so the dall-e-3 request released dall-e-2 (then dall-e-2 released it) or found it
    # resident already.
    evictions = memory["evictions"]
    assert memory["budget_bytes"] == budget and evictions in (1, 2)
    (resident,) = memory["resident"]
    assert resident["models"] == [name for name in sources if name != "dall-e-3"]
    assert resident["bytes"] == memory["used_bytes"] > 0 and not resident["in_use"]
    assert metrics[("easel_memory_budget_bytes", ("total",))] == budget
    assert metrics[("easel_memory_resident_bytes", (resident["name"],))] == resident["bytes"]
    assert metrics[("easel_memory_evictions_total", ())] == evictions
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "ready" in rows["dall-e-2"] and "yes" in rows["dall-e-2"]
    assert "unloaded" in rows["dall-e-3"] and " no " in rows["dall-e-3"]
    assert f"{evictions} released to make room" in listed.stdout
