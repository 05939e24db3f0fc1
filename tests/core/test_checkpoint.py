"""Checkpoints: round trip, and clear errors for truncated, corrupt, unsafe or mismatched files."""

import pickle
from pathlib import Path

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


def test_a_checkpoint_written_by_kanlib_0_1_still_loads():
    """tests/core/data/kan_v1_*: written by kanlib 0.1.0 (before KANConfig), with that version's outputs."""
    data = Path(__file__).parent / "data"
    model = KAN.load(data / "kan_v1_2-2-1_G5.pt")
    reference = torch.load(data / "kan_v1_2-2-1_G5_outputs.pt", weights_only=True)
    assert model.config().width == (2, 2, 1) and model.config().seed == 4
    with torch.no_grad():  # rounding only: the same sums in another order on another CPU (measured 1.6e-15)
        torch.testing.assert_close(model(reference["x"]), reference["y"], rtol=1e-13, atol=1e-14)


def test_an_unknown_config_key_names_the_key(trained):
    _, path, _ = trained
    payload = torch.load(path, weights_only=True)
    payload["config"]["grid_sise"] = 5
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="grid_sise"):
        KAN.load(path)


def test_a_checkpoint_of_another_model_family_is_refused_by_name(trained):
    _, path, _ = trained
    payload = torch.load(path, weights_only=True)
    payload["format"] = "kanlib.MLP"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="kanlib.MLP checkpoint.*MLP.load"):
        KAN.load(path)
