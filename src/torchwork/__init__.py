"""torchwork: the PyTorch workflow (data, model, training and testing loops, evaluation,
saving and loading) as a library and a command-line tool.

Importing torchwork is cheap: the names below are loaded from their modules on first use.

>>> from torchwork import make_line, split, LinearRegressionModel, fit, save, load

The whole of `torchwork run` is `run`, its flags as keywords of the same name:

>>> import torchwork as tw
>>> folder = tw.run(data="iris.csv", target="species", epochs=100)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TorchworkError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "ModelFileError": "errors",
    "RunFolderError": "errors",
    "TrainingError": "errors",
    "TrainingDiverged": "errors",
    "TrainingInterrupted": "errors",
    "RunConfig": "config",
    "DataConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "make_line": "data",
    "make_regression": "data",
    "split": "data",
    "split_sizes": "data",
    "batches": "data",
    "read_features": "data",
    "Splits": "data",
    "LinearRegressionModel": "models",
    "LinearRegressionModelV2": "models",
    "LinearClassifier": "models",
    "MLP": "models",
    "build_model": "models",
    "make_loss": "optim",
    "make_optimizer": "optim",
    "train_step": "engine",
    "test_step": "engine",
    "fit": "engine",
    "History": "engine",
    "mae": "metrics",
    "mse": "metrics",
    "rmse": "metrics",
    "r2": "metrics",
    "regression_metrics": "metrics",
    "least_squares": "solve",
    "LeastSquares": "solve",
    "plot_predictions": "plots",
    "plot_loss_curves": "plots",
    "save": "checkpoint",
    "load": "checkpoint",
    "read_metadata": "checkpoint",
    "run": "workflow.run",
    "resume": "workflow.run",
    "RunFolderPath": "report.notebook",
    "predict_file": "predict",
    "evaluate_file": "predict",
    "Predictor": "predict",
    "prepare_data": "data",
    "export_model": "export",
    "write_report": "report.html",
    "compare_runs": "report.compare",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'torchwork' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"torchwork.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
