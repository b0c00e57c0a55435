"""Admission, usage records, metrics and the request's log line around one generation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from easel.api.auth import Caller
from easel.api.context import request_id_var
from easel.api.state import AppServices
from easel.catalog import GenerationPlan
from easel.catalog.usage_tokens import ImageUsage
from easel.db.database import utcnow
from easel.engine.types import GenerationTiming
from easel.errors import EaselError
from easel.observability import metrics
from easel.usage.store import Endpoint, UsageRecord

log = logging.getLogger("easel.generation")

# The usage table's width for `user`; OpenAI sets no limit, so longer values are cut, not refused.
USER_CHARS = 256
# nginx's status for "client closed request": what metrics, usage and logs record for a client
# that left before its answer (which nobody receives).
CLIENT_CLOSED_REQUEST = 499


@dataclass
class Outcome:
    """How one generation request ended: its metrics, usage record and log line all report this
    one status. Filled in as the request is understood."""

    model: str = "unknown"
    status: int | None = None  # None until the request ends

    def end(self, error: BaseException | None) -> int:
        """The request's status: the one already set (a client that left: 499), else what
        `error` answers with, else 200."""
        if self.status is None:
            if error is None:
                self.status = 200
            elif isinstance(error, EaselError):
                self.status = error.status_code
            else:
                self.status = 500
        return self.status


@contextlib.contextmanager
def counted_request() -> Iterator[Outcome]:
    """Counts every generation request by model and status, refused ones included."""
    outcome = Outcome()
    error: BaseException | None = None
    try:
        yield outcome
    except BaseException as exc:
        error = exc
        if isinstance(exc, EaselError) and exc.code in (
            "rate_limit_exceeded",
            "insufficient_quota",
            "model_not_allowed",
        ):
            metrics.LIMIT_REFUSALS.labels(exc.code).inc()
        raise
    finally:
        metrics.REQUESTS.labels(outcome.model, str(outcome.end(error))).inc()


async def admit_request(services: AppServices, caller: Caller) -> None:
    """The key's requests-per-minute, taken before the body is looked at."""
    if caller.key.policy.rpm is None:
        return
    try:
        caller.response_headers.update(
            await asyncio.to_thread(services.limiter.admit_request, caller.key)
        )
    except EaselError as exc:
        caller.response_headers.update(_ratelimit_headers(exc.headers))
        raise


@dataclass
class Meter:
    """Filled in by the serving code while the request runs."""

    timing: GenerationTiming = field(default_factory=GenerationTiming)
    encoding_seconds: float = 0.0
    delivered: int = 0
    # The tokens the response reports (GPT names only).
    usage: ImageUsage | None = None

    @contextlib.contextmanager
    def encoding(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.encoding_seconds = time.perf_counter() - started


@contextlib.asynccontextmanager
async def metered(
    services: AppServices,
    caller: Caller,
    user: str | None,
    plan: GenerationPlan,
    outcome: Outcome,
    endpoint: Endpoint,
) -> AsyncIterator[Meter]:
    """Admit the request's images (429 before any work is queued), then write its usage record
    and observe its metrics however it ends, with the status of `outcome`."""
    request_id = request_id_var.get()
    try:
        admission = await asyncio.to_thread(
            services.limiter.admit_images, caller.key, user, plan.n, request_id
        )
    except EaselError as exc:
        caller.response_headers.update(_ratelimit_headers(exc.headers))
        raise
    caller.response_headers.update(admission.headers)
    meter = Meter()
    error: BaseException | None = None
    metrics.IN_FLIGHT.labels(plan.model).inc()
    try:
        yield meter
    except BaseException as exc:
        error = exc
        raise
    finally:
        metrics.IN_FLIGHT.labels(plan.model).dec()
        status = outcome.end(error)
        delivered = meter.delivered if status == 200 else 0
        usage = meter.usage if status == 200 else None
        await services.usage_writer.record(
            UsageRecord(
                request_id=request_id,
                created_at=utcnow(),
                key_id=caller.key.id,
                user=user[:USER_CHARS] if user is not None else None,
                model=plan.model,
                size=plan.size,
                quality=plan.quality,
                n=plan.n,
                images_delivered=delivered,
                queued_ms=round(meter.timing.queued_seconds * 1000),
                generating_ms=round(meter.timing.generating_seconds * 1000),
                status=status,
                input_text_tokens=usage.text_tokens if usage else 0,
                input_image_tokens=usage.image_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                quota_period=admission.quota_period,
                endpoint=endpoint,
            )
        )
        _observe(plan.model, meter, delivered)
        _log(services, caller, user, plan, meter, status, delivered, endpoint)


def _observe(model: str, meter: Meter, delivered: int) -> None:
    metrics.QUEUE_SECONDS.labels(model).observe(meter.timing.queued_seconds)
    # The histograms of the work that made images: a failed request's is in its usage record.
    if delivered:
        metrics.GENERATION_SECONDS.labels(model).observe(meter.timing.generating_seconds)
        metrics.ENCODING_SECONDS.labels(model).observe(meter.encoding_seconds)
        metrics.IMAGES_GENERATED.labels(model).inc(delivered)


def _log(
    services: AppServices,
    caller: Caller,
    user: str | None,
    plan: GenerationPlan,
    meter: Meter,
    status: int,
    delivered: int,
    endpoint: Endpoint,
) -> None:
    fields: dict[str, object] = {
        "endpoint": endpoint,
        "key_id": caller.key.id,
        "user": user,
        "model": plan.model,
        "size": plan.size,
        "quality": plan.quality,
        "n": plan.n,
        "images_delivered": delivered,
        "status": status,
        "queued_ms": round(meter.timing.queued_seconds * 1000),
        "generating_ms": round(meter.timing.generating_seconds * 1000),
        "encoding_ms": round(meter.encoding_seconds * 1000),
        "prompt_chars": len(plan.user_prompt),
    }
    if services.settings.log_prompts:
        fields["prompt"] = plan.user_prompt
    log.info("generation %s", "completed" if status == 200 else "failed", extra=fields)


def _ratelimit_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("x-ratelimit-")}
