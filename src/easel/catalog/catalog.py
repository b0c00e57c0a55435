"""The catalog: built-in entries, a user's YAML file and `--model NAME=SOURCE` overrides, merged."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from easel.catalog.defaults import BuiltinCatalog, default_models, merged_entry
from easel.catalog.machine import CPU_ONLY, Machine
from easel.catalog.spec import ModelSpec
from easel.errors import NotFoundError


class CatalogConfigError(ValueError):
    """A config file or `--model` flag that cannot be turned into a catalog."""


class Catalog:
    """The models this server offers, by name, in a stable order."""

    def __init__(self, specs: Iterable[ModelSpec], builtin: BuiltinCatalog | None = None) -> None:
        self._specs = {spec.name: spec for spec in specs}
        # The built-in entries this catalog started from (None: it was given its entries).
        self.builtin = builtin

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def replace(self, spec: ModelSpec) -> None:
        """Put `spec` in place of the entry of its name: the engine's start fits presets to the
        model families (engine/family_presets.py) before the first request is planned."""
        if spec.name not in self._specs:
            raise KeyError(spec.name)
        self._specs[spec.name] = spec

    def get(self, name: str) -> ModelSpec:
        """The entry for `name`, or OpenAI's 404 `model_not_found`."""
        try:
            return self._specs[name]
        except KeyError:
            raise NotFoundError(
                f"The model `{name}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            ) from None

    def origin(self, name: str) -> str:
        """Why `name` runs its source: the built-in choice for the machine, or the operator's."""
        if self.builtin is None:
            return "configured"
        return self.builtin.origin(name, self.get(name).source)

    @classmethod
    def build(
        cls,
        config_file: Path | None = None,
        overrides: Sequence[str] = (),
        machine: Machine = CPU_ONLY,
    ) -> Catalog:
        """The built-in entries for `machine`, then the YAML file's `models:` entries, then
        `NAME=SOURCE` overrides.

        An entry for an existing name changes only the fields it gives, so pointing `dall-e-3` at
        another pipeline keeps dall-e-3's rules (but not the built-in weights' licence or
        decoder); a new entry naming a `family` takes its rules.
        """
        builtin = default_models(machine)
        raw: dict[str, dict[str, Any]] = {name: dict(e) for name, e in builtin.models.items()}
        if config_file is not None:
            for name, entry in _read_config_models(config_file).items():
                raw[name] = merged_entry(raw.get(name, {}), entry)
        for override in overrides:
            name, source = _parse_override(override)
            raw[name] = merged_entry(raw.get(name, {}), {"source": source})
        specs = []
        for name, entry in raw.items():
            try:
                specs.append(ModelSpec(name=name, **builtin.with_family_defaults(entry)))
            except ValidationError as exc:
                raise CatalogConfigError(f"model {name!r}: {exc}") from exc
            except TypeError as exc:
                raise CatalogConfigError(f"model {name!r}: {exc}") from exc
        return cls(specs, builtin)


def _read_config_models(config_file: Path) -> dict[str, dict[str, Any]]:
    try:
        document = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CatalogConfigError(f"cannot read config file {config_file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogConfigError(f"config file {config_file} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise CatalogConfigError(f"config file {config_file}: expected a mapping at the top")
    models = document.get("models", {}) or {}
    if not isinstance(models, dict) or not all(
        isinstance(entry, dict) for entry in models.values()
    ):
        raise CatalogConfigError(
            f"config file {config_file}: `models` must map each model name to its settings"
        )
    return {str(name): entry for name, entry in models.items()}


def _parse_override(override: str) -> tuple[str, str]:
    name, sep, source = override.partition("=")
    if not sep or not name.strip() or not source.strip():
        raise CatalogConfigError(f"--model expects NAME=HUB_ID_OR_DIR, got {override!r}")
    return name.strip(), source.strip()
