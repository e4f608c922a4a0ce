import json
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


def _write_with_description(path, model, description, **extra):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "torchwork", "format_version": "1", "model": json.dumps(description)}
    save_file(state | extra, str(path), metadata=metadata)
    return path


def test_a_layer_count_bomb_is_refused_before_building_in_one_short_line(tmp_path):
    # 0.9 MB of description saying 300,010 hidden layers: 2.5 GB and a minute, before.
    bomb = _write_with_description(
        tmp_path / "bomb.safetensors",
        MLP(1, [8]),
        {"kind": "mlp", "in_features": 1, "out_features": 1, "hidden": [1] * 300_010},
    )
    with pytest.raises(TorchworkError, match="says 300,010 hidden layers") as error:
        load(bomb)
    assert len(str(error.value)) < 200 and "bomb.safetensors" in str(error.value)


@pytest.mark.parametrize(
    ("hidden", "extra", "message"),
    [
        ([8, 8], {}, "holds 4 tensor\\(s\\), the description 6"),
        ([16], {}, "'layers.0.weight' has shape \\[8, 1\\], the description says \\[16, 1\\]"),
        (
            [8],
            {f"x{i}": torch.zeros(1) for i in range(500)},
            r"unexpected 'x\d+', 'x\d+', 'x\d+' and 497 more$",
        ),
    ],
)
def test_the_description_is_checked_against_the_tensors(tmp_path, hidden, extra, message):
    path = _write_with_description(
        tmp_path / "m.safetensors",
        MLP(1, [8]),
        {"kind": "mlp", "in_features": 1, "out_features": 1, "hidden": hidden},
        **extra,
    )
    with pytest.raises(TorchworkError, match=message) as error:
        load(path)
    assert len(str(error.value)) < 300


def test_a_stored_config_that_run_refuses_is_refused_on_load(tmp_path):
    path = save(
        LinearRegressionModel(), tmp_path / "m.safetensors", config={"data": {"step": 1e-9}}
    )
    for read in (load, read_metadata):
        with pytest.raises(TorchworkError, match="would refuse: the line would have 1e\\+09 rows"):
            read(path)


def test_classifiers_load_as_classifiers_and_older_files_still_load(tmp_path):
    from torchwork.models import LinearClassifier

    path = save(LinearClassifier(3, 1, "binary"), tmp_path / "new.safetensors")
    assert type(load(path)) is LinearClassifier
    assert read_metadata(path)["model"]["task"] == "binary"
    # Written before descriptions named the task: the stored preprocessing says it.
    old = save(
        LinearRegressionModelV2(3, 4),
        tmp_path / "old.safetensors",
        preprocess={"task": "multiclass"},
    )
    assert read_metadata(old)["model"] == {"kind": "linear", "in_features": 3, "out_features": 4}
    loaded = load(old)
    assert type(loaded) is LinearClassifier and loaded.task == "multiclass"
    assert (
        type(load(save(LinearRegressionModelV2(3), tmp_path / "r.safetensors")))
        is LinearRegressionModelV2
    )


def test_a_folder_or_a_checkpoint_is_not_taken_for_a_model_file(tmp_path):
    from torchwork.checkpoint import save_checkpoint

    with pytest.raises(TorchworkError, match="is a folder, not a model file: give a model file"):
        load(tmp_path)
    save(LinearRegressionModel(), tmp_path / "model.safetensors")
    with pytest.raises(
        TorchworkError, match="is a folder, not a model file: use .*model.safetensors"
    ):
        load(tmp_path)
    model = LinearRegressionModel()
    contents = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": {},
        "history": {},
        "config": {},
    }
    save_checkpoint(tmp_path / "checkpoint-last.pt", contents)
    with pytest.raises(TorchworkError, match="is a resume checkpoint, not a model file"):
        load(tmp_path / "checkpoint-last.pt")


def test_a_checkpoint_whose_config_run_refuses_is_refused(tmp_path):
    from torchwork.checkpoint import load_checkpoint, save_checkpoint

    contents = {
        "epoch": 3,
        "model": LinearRegressionModel().state_dict(),
        "optimizer": {},
        "history": {},
        "config": {"model": {"hidden": [1] * 1000}},
    }
    save_checkpoint(tmp_path / "c.pt", contents)
    with pytest.raises(TorchworkError, match="1,000 layers, more than 100"):
        load_checkpoint(tmp_path / "c.pt")
