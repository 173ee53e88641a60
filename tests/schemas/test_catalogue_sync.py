"""schemas/ names the models and datasets the runner's catalogue defines."""

from __future__ import annotations

from typing import get_args

from edgebench.runner.catalogue import DATASETS, MODEL_DATASETS, WORKLOADS
from edgebench.schemas.job import DatasetName, ModelName


def test_schema_literals_match_the_catalogue() -> None:
    assert set(get_args(ModelName)) == set(MODEL_DATASETS)
    assert set(get_args(DatasetName)) == set(DATASETS)
    for name, w in WORKLOADS.items():
        assert w["model"] in MODEL_DATASETS, name
        assert w["dataset"] in MODEL_DATASETS[w["model"]], name
