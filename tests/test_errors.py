"""Each kind of mistake raises its own TorchworkError subclass, with today's exit codes."""

import pytest

import torchwork
from torchwork import (
    ConfigError,
    DataError,
    ModelFileError,
    RunConfig,
    RunFolderError,
    TorchworkError,
    TrainingDiverged,
    TrainingError,
    TrainingInterrupted,
)


def test_each_kind_of_mistake_has_its_class(tmp_path):
    with pytest.raises(ConfigError, match="--lr"):
        RunConfig.from_dict({"train": {"lr": -1.0}}).validate()
    with pytest.raises(DataError, match="does not exist"):
        torchwork.read_features(tmp_path / "missing.csv")
    (tmp_path / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        torchwork.load(tmp_path / "model.safetensors")
    with pytest.raises(RunFolderError, match="no such run folder"):
        torchwork.resume(tmp_path / "nothing")


def test_every_kind_is_a_torchwork_error_with_its_exit_code(tmp_path):
    for kind in (ConfigError, DataError, ModelFileError, RunFolderError, TrainingError):
        assert issubclass(kind, TorchworkError) and kind("x").exit_code == 2
    diverged = TrainingDiverged(5, float("nan"))
    assert isinstance(diverged, TrainingError) and diverged.exit_code == 3
    stopped = TrainingInterrupted(15, 7, tmp_path)
    assert isinstance(stopped, TrainingError) and stopped.exit_code == 143
    assert "stopped after epoch 6" in str(stopped)
