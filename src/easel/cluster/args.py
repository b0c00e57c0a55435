"""The arguments of the Ray Serve application: everything a replica needs, as plain YAML-able data.

`easel cluster serve` builds them from flags; `easel cluster config` writes them into the config
file for `serve deploy`. Secrets (EASEL_URL_SECRET, EASEL_DATABASE_URL, AWS credentials) stay in the
environment of the cluster's processes, never in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from easel.catalog import Catalog, ModelSpec
from easel.catalog.catalog import CatalogConfigError
from easel.catalog.defaults import DEFAULT_MODELS, is_builtin_source
from easel.settings import Settings, load_settings


class ServerOptions(BaseModel):
    """The non-secret settings given for the ingress replicas; what is left out (None) comes from
    each replica's own EASEL_* environment or the default, as for `easel serve`."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = None
    storage: str | None = None
    public_base_url: str | None = None
    url_ttl_seconds: int | None = None
    sweep_interval_seconds: int | None = None
    max_body_bytes: int | None = None
    # Empty or `off`: no matting deployment, and transparent backgrounds are refused.
    matting_model: str | None = None

    def settings(self) -> Settings:
        """Settings from the environment, then these options; raises SettingsError (a
        ValueError) naming what is unusable."""
        return load_settings(self.model_dump())


class IngressOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=1, ge=1)
    cpus_per_replica: float = Field(default=0.5, ge=0)
    # Each ongoing request mostly waits on a model replica, so one ingress replica holds many.
    max_ongoing_requests: int = Field(default=256, ge=1)


# A GPU matting replica shares its GPU: BiRefNet is small next to a diffusion pipeline.
DEFAULT_MATTING_GPU_SHARE = 0.25


class MattingOptions(BaseModel):
    """The background-matting deployment's size (deployed while the server settings name a
    matting model)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=1, ge=1)
    # None: DEFAULT_MATTING_GPU_SHARE when the cluster has GPUs to spare, else none.
    gpus_per_replica: float | None = Field(default=None, ge=0)


class ClusterArgs(BaseModel):
    """The application builder's `args`: the whole catalog (so the config file is self-contained),
    the server options and the sizes of the ingress and the matting deployment."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, dict[str, Any]]
    server: ServerOptions = Field(default_factory=ServerOptions)
    ingress: IngressOptions = Field(default_factory=IngressOptions)
    matting: MattingOptions = Field(default_factory=MattingOptions)
    # Catalog models deployed without replicas, each with why: the ingress answers 503 for them.
    undeployed: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def build(
        cls,
        catalog: Catalog,
        server: ServerOptions,
        deployment_overrides: dict[str, Any],
        ingress: IngressOptions,
        matting: MattingOptions | None = None,
    ) -> ClusterArgs:
        """`deployment_overrides` (from flags) replace those fields of every model's deployment."""
        models = {}
        for spec in catalog:
            entry = spec.model_dump(mode="json", exclude={"name"})
            entry["deployment"] = {**entry["deployment"], **deployment_overrides}
            models[spec.name] = entry
        # Validate now, so a bad flag fails before anything is deployed.
        args = cls(
            models=models, server=server, ingress=ingress, matting=matting or MattingOptions()
        )
        # Imported here: the grouping rule is the engine's, and the CLI starts without torch.
        from easel.cluster.groups import model_groups

        model_groups(args.catalog())
        server.settings()
        return args

    def uses_builtin_weights(self, model: str) -> bool:
        """Whether `model` is a built-in entry still pointing at its default hub weights: the
        operator did not choose them, and an offline cluster cannot fetch them."""
        return model in DEFAULT_MODELS and is_builtin_source(self.models[model]["source"])

    def catalog(self) -> Catalog:
        specs = []
        for name, entry in self.models.items():
            try:
                specs.append(ModelSpec(name=name, **entry))
            except ValidationError as exc:
                raise CatalogConfigError(f"model {name!r}: {exc}") from exc
        return Catalog(specs)
