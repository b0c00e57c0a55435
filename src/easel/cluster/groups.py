"""Which catalog names each model deployment serves: the names that share a pipeline, grouped as
`easel serve`'s engine groups them, so that they load the weights once and batch together."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from easel.catalog import ModelSpec
from easel.catalog.catalog import CatalogConfigError
from easel.catalog.spec import DeploymentSpec
from easel.engine.engine import specs_by_pipeline
from easel.engine.loader import PipelineKey


@dataclass(frozen=True)
class ModelGroup:
    """Catalog entries that share one pipeline, and so one Ray Serve deployment: each replica runs
    all of them in one engine."""

    name: str  # the deployment's, as `serve status` shows it
    specs: tuple[ModelSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    @property
    def deployment(self) -> DeploymentSpec:
        """The group's `deployment` block, the same for every entry (`model_groups` checks)."""
        return self.specs[0].deployment


def model_groups(specs: Iterable[ModelSpec]) -> list[ModelGroup]:
    """`specs` by the deployment that serves them, in catalog order.

    Raises CatalogConfigError when the entries of one group ask for different deployments: one
    deployment cannot be sized two ways, and no choice among them would be what each entry says.
    """
    groups = []
    for key, members in specs_by_pipeline(specs).items():
        _check_one_deployment(key, members)
        groups.append(ModelGroup(deployment_name(key), tuple(members)))
    return groups


def deployment_name(key: PipelineKey) -> str:
    """`model:` and the source's last part, with a short hash of the whole key: readable, the same
    on every deploy whichever names share the source, and distinct for sources of one basename."""
    digest = hashlib.sha256(f"{key.source}\n{key.decoder or ''}".encode()).hexdigest()[:6]
    basename = key.source.rstrip("/").rsplit("/", 1)[-1]
    # Ray reserves '#' in deployment names.
    return f"model:{basename.replace('#', '_')}-{digest}"


def _check_one_deployment(key: PipelineKey, specs: Sequence[ModelSpec]) -> None:
    first = specs[0].deployment
    fields = [
        field
        for field in DeploymentSpec.model_fields
        if any(getattr(spec.deployment, field) != getattr(first, field) for spec in specs)
    ]
    if not fields:
        return
    values = "; ".join(
        f"{field} ("
        + ", ".join(f"{spec.name}: {getattr(spec.deployment, field)}" for spec in specs)
        + ")"
        for field in fields
    )
    flags = ", ".join("--" + field.replace("_", "-") for field in fields)
    raise CatalogConfigError(
        f"models {', '.join(spec.name for spec in specs)} share the pipeline {key.source}, so "
        f"one Ray deployment, but their `deployment` blocks differ: {values}. Give them the same "
        f"block, or set it for every model with {flags}."
    )
