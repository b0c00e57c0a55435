"""The model catalog: every model's limits and how its parameters map onto its pipeline."""

from easel.catalog.catalog import Catalog
from easel.catalog.edit import EditInputs
from easel.catalog.spec import GenerationPlan, ModelSpec, QualityPreset, StylePreset

__all__ = ["Catalog", "EditInputs", "GenerationPlan", "ModelSpec", "QualityPreset", "StylePreset"]
