"""kanlib.files, the one atomic writer: every kind of output file, its mode, and what a failure leaves."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from kanlib import KAN, create_dataset
from kanlib.analysis.figures import save_figure
from kanlib.files import atomic_path, atomic_write_text, read_json, write_json
from kanlib.workflow.results import save_dataset, write_table


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(value):
        os.umask(value)

    yield set_umask
    os.umask(previous)


def write_every_kind(folder) -> list:
    """A model, a metrics file, a results table (CSV and Parquet), a dataset and a figure."""
    data = create_dataset(lambda x: x[:, [0]] * x[:, [1]], train_num=20, test_num=10)
    model_file = KAN(width=[2, 1, 1], grid=3, k=3).save(folder / "model.pt")
    metrics_file = write_json(folder / "metrics.json", {"test_rmse": 0.1})
    table = pd.DataFrame({"grid_size": [3, 5], "test_rmse": [0.1, 0.01]})
    csv_file = write_table(table, folder / "results.csv")
    parquet_file = write_table(table, folder / "results.parquet")
    dataset_file = save_dataset(folder / "data.pt", data, {"seed": 0})
    figure = Figure()
    figure.add_subplot().plot([1, 2], [3, 4])
    png_file, pdf_file = save_figure(figure, folder / "figure.png")
    return [model_file, metrics_file, csv_file, parquet_file, dataset_file, png_file, pdf_file]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_every_output_file_gets_the_mode_of_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    files = write_every_kind(tmp_path)
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "summary.md", "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_write_text_creates_folders(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "b.md", "text\n")
    assert target.read_text() == "text\n" and [p.name for p in target.parent.iterdir()] == ["b.md"]


def test_json_round_trip(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1, "b": None, "c": [1.5]})
    assert read_json(tmp_path / "m.json") == {"a": 1, "b": None, "c": [1.5]}


def test_checkpoint_bytes_are_what_torch_reads(tmp_path):
    path = KAN(width=[2, 1], grid=4, k=2).save(tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["format"] == "kanlib.KAN"
