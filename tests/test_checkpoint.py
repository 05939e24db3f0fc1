"""Checkpoints: round trip, and clear errors for truncated, corrupt, unsafe or mismatched files."""
import pickle

import pytest
import torch

from kanlib import KAN, create_dataset
from kanlib.checkpoint import CheckpointError


@pytest.fixture
def trained(tmp_path):
    dataset = create_dataset(lambda x: x[:, [0]] * x[:, [1]], train_num=100, test_num=50)
    model = KAN(width=[2, 2, 1], grid=5, k=3)
    model.fit(dataset, steps=3, progress=False)
    fine = KAN(width=[2, 2, 1], grid=9, k=3).initialize_from_another_model(model, dataset["train_input"])
    path = fine.save(tmp_path / "model.pt")
    return fine, path, dataset


def test_round_trip_gives_the_same_function(trained):
    model, path, dataset = trained
    loaded = KAN.load(path)
    assert loaded.config() == model.config() and loaded.layers[0].grid_size == 9
    x = dataset["test_input"]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert KAN.load(path, dtype="float32").dtype == torch.float32


def test_no_temporary_files_left(trained):
    _, path, _ = trained
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_truncated_file(trained):
    _, path, _ = trained
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        KAN.load(path)


def test_corrupted_tensor_bytes_fail_the_digest(trained):
    model, path, _ = trained
    # rewrite the archive with one coefficient changed but the old digest kept
    payload = torch.load(path, weights_only=True)
    payload["state"]["layers.0.coef"][0, 0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        KAN.load(path)


def test_mismatched_configuration(trained):
    _, path, _ = trained
    payload = torch.load(path, weights_only=True)
    payload["config"]["width"] = [2, 3, 1]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match"):
        KAN.load(path)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch EXPLOITED",))


def test_loading_never_runs_code_from_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        pickle.dump({"format": "kanlib.KAN", "state": _Exploit()}, stream)
    with pytest.raises(CheckpointError):
        KAN.load(path)
    assert not (tmp_path / "EXPLOITED").exists()


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        KAN.load(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a kanlib checkpoint"):
        KAN.load(tmp_path / "other.pt")
