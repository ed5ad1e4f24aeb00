"""The seed's model-evaluation grid: every model config trained on every dataset at once.

Each dataset maps ``train_model`` over the configs with the dataset broadcast, and
each run is named from attributes of its parameters by the ``task_run_name`` template.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from braid import TaskFuture, flow, task, unmapped, wait


@dataclass
class Dataset:
    name: str


@dataclass
class ModelConfig:
    name: str


@task(task_run_name="train on {dataset.name} with {model_config.name}")
def train_model(dataset: Dataset, model_config: ModelConfig) -> dict:
    return {
        "dataset": dataset.name,
        "model": model_config.name,
        "score": random.random(),
    }


@flow
def evaluate_models(datasets: list[Dataset], model_configs: list[ModelConfig]) -> None:
    all_futures: list[TaskFuture[dict[str, object]]] = []
    for dataset in datasets:
        futures = train_model.map(
            dataset=unmapped(dataset),
            model_config=model_configs,
        )
        all_futures.extend(futures)

    results = [future.result() for future in wait(all_futures).done]

    for future in all_futures:
        print(f"task run: {future.task_run_name}")
    print(f"\nBest model: {max(results, key=lambda r: r['score'])}")


if __name__ == "__main__":
    evaluate_models(
        [Dataset("customers"), Dataset("products"), Dataset("orders")],
        [ModelConfig("random_forest"), ModelConfig("gradient_boosting")],
    )
