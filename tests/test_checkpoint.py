import os
import pickle
import subprocess
import sys

import pytest
import torch

from torchwork import (
    MLP,
    LinearRegressionModel,
    LinearRegressionModelV2,
    TorchworkError,
    load,
    read_metadata,
    save,
)

MODELS = [
    lambda: LinearRegressionModel(),
    lambda: LinearRegressionModelV2(3),
    lambda: MLP(3, [16, 8]),
]


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_save_then_load_predicts_identically(tmp_path, make, suffix):
    torch.manual_seed(0)
    model = make()
    path = save(model, tmp_path / f"model{suffix}")
    loaded = load(path)
    assert type(loaded) is type(model)
    assert not loaded.training
    X = torch.randn(20, model.spec()["in_features"])
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(X), loaded(X))


def test_pth_loads_into_a_given_instance(tmp_path):
    torch.manual_seed(1)
    model = LinearRegressionModel()
    save(model, tmp_path / "model.pth")
    target = LinearRegressionModel()
    assert load(tmp_path / "model.pth", target) is target
    assert torch.equal(target.weights, model.weights)


CHILD = """
import sys, torch
from torchwork import load
model = load(sys.argv[1])
X = torch.linspace(-3, 3, 64).unsqueeze(1).repeat(1, int(sys.argv[2]))
with torch.inference_mode():
    sys.stdout.write(model(X).numpy().tobytes().hex())
"""


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_model_saved_by_one_process_predicts_bit_identically_in_another(tmp_path, suffix):
    saver = """
import sys, torch
from torchwork import MLP, save
torch.manual_seed(3)
model = MLP(2, [32, 32]).eval()
save(model, sys.argv[1])
X = torch.linspace(-3, 3, 64).unsqueeze(1).repeat(1, 2)
with torch.inference_mode():
    sys.stdout.write(model(X).numpy().tobytes().hex())
"""
    path = str(tmp_path / f"model{suffix}")
    first = subprocess.run(
        [sys.executable, "-c", saver, path], capture_output=True, text=True, check=True
    )
    second = subprocess.run(
        [sys.executable, "-c", CHILD, path, "2"], capture_output=True, text=True, check=True
    )
    assert first.stdout and first.stdout == second.stdout


def test_safetensors_keeps_the_model_description_and_config(tmp_path):
    save(MLP(4, [8]), tmp_path / "m.safetensors", config={"train": {"lr": 0.5}})
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["model"] == {"kind": "mlp", "in_features": 4, "out_features": 1, "hidden": [8]}
    assert meta["config"] == {"train": {"lr": 0.5}}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"")
    torch.save({"weights": torch.zeros(1), "bias": _Evil(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(TorchworkError, match="refused"):
        load(evil)
    assert not marker.exists()


def test_plain_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(TorchworkError):
        load(evil)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_files_are_clear_errors(tmp_path, suffix):
    path = save(MLP(2, [8]), tmp_path / f"m{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchworkError, match="corrupt or truncated"):
        load(path)


def test_shape_mismatch_is_a_clear_error(tmp_path):
    save(LinearRegressionModelV2(3), tmp_path / "m.pth")
    with pytest.raises(TorchworkError, match="shape"):
        load(tmp_path / "m.pth", LinearRegressionModelV2(2))


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(TorchworkError, match="does not exist"):
        load(tmp_path / "nope.safetensors")
    with pytest.raises(TorchworkError, match=r"\.safetensors or \.pth"):
        save(LinearRegressionModel(), tmp_path / "model.bin")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = save(LinearRegressionModel(), tmp_path / "model.pth")
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(TorchworkError, match="No space left"):
        save(LinearRegressionModel(), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pth"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("m.safetensors", "m.pth"):
        path = save(MLP(2, [4]), tmp_path / name)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, name
