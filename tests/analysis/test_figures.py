"""Tests for kanlib.analysis.figures: figures render, carry the expected artists, save atomically."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kanlib.analysis.figures import (
    plot_fitted_power_laws,
    plot_loss_staircase,
    plot_rmse_heatmap,
    plot_rmse_vs_data,
    plot_rmse_vs_grid,
    rmse_vs_grid_figure,
    save_figure,
)
from kanlib.analysis.fits import fit_scaling_laws
from kanlib.analysis.reference import SEED_GRID_SIZES, SEED_TRAIN_SIZES, seed_reference_frame

N_LABELS = [f"N={n}" for n in SEED_TRAIN_SIZES]
G_LABELS = [f"G={g}" for g in SEED_GRID_SIZES]
TEST_DPI = 50  # small PNGs keep the tests fast


def make_results(n_seeds: int = 1) -> pd.DataFrame:
    """Realistic 4 N x 5 G results table built on the seed notebook's numbers.

    Seed 0 is the published table; further seeds scale it by log-normal noise.
    """
    reference = seed_reference_frame()
    rng = np.random.default_rng(0)
    frames = []
    for seed in range(n_seeds):
        noise = np.ones(len(reference)) if seed == 0 else rng.lognormal(0.0, 0.3, len(reference))
        frames.append(
            reference.assign(
                function="exp_sin",
                width="2-1-1",
                k=3,
                seed=seed,
                n_params=3 * (reference["grid_size"] + 3),
                steps=50,
                optimizer="lbfgs",
                train_rmse=reference["train_rmse"] * noise,
                test_rmse=reference["test_rmse"] * noise,
                wall_time_s=1.0,
                device="cpu",
                mlflow_run_id=f"run-{seed}",
            )
        )
    return pd.concat(frames, ignore_index=True)


def make_history(n_seeds: int = 1, steps_per_level: int = 10) -> pd.DataFrame:
    """History table: within each grid level the RMSE decays to the seed table's value."""
    reference = seed_reference_frame().set_index(["n_train", "grid_size"])
    rows = []
    for n_train in SEED_TRAIN_SIZES:
        for seed in range(n_seeds):
            cumulative = 0
            for grid_size in SEED_GRID_SIZES:
                final = reference.loc[(n_train, grid_size)]
                for step in range(steps_per_level):
                    decay = 1.0 + 3.0 * np.exp(-step / 2.0) + 0.1 * seed
                    rows.append(
                        {
                            "function": "exp_sin",
                            "width": "2-1-1",
                            "k": 3,
                            "n_train": n_train,
                            "seed": seed,
                            "grid_size": grid_size,
                            "step": step,
                            "cumulative_step": cumulative,
                            "train_rmse": final["train_rmse"] * decay,
                            "test_rmse": final["test_rmse"] * decay,
                        }
                    )
                    cumulative += 1
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def results_one_seed() -> pd.DataFrame:
    return make_results(1)


@pytest.fixture(scope="module")
def results_three_seeds() -> pd.DataFrame:
    return make_results(3)


def pixel_std(path: Path) -> float:
    return float(np.std(matplotlib.image.imread(str(path))))


def assert_saved_and_not_blank(figure: Figure, path: Path) -> None:
    png_path, pdf_path = save_figure(figure, path, dpi=TEST_DPI)
    assert png_path == path and pdf_path == path.with_suffix(".pdf")
    assert pixel_std(png_path) > 0.02
    assert pdf_path.read_bytes().startswith(b"%PDF")


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


# --------------------------------------------------------------------------
# save_figure
# --------------------------------------------------------------------------


def test_blank_figure_fails_the_blankness_check(tmp_path):
    png_path, _ = save_figure(Figure(figsize=(2, 2)), tmp_path / "blank.png", dpi=TEST_DPI)
    assert pixel_std(png_path) < 1e-6


def test_save_figure_writes_png_and_vector_without_leftovers(tmp_path, results_one_seed):
    figure = plot_rmse_vs_data(results_one_seed)
    target = tmp_path / "nested" / "folder" / "rmse.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"stale")
    png_path, pdf_path = save_figure(figure, target, dpi=TEST_DPI)
    assert png_path.read_bytes().startswith(b"\x89PNG")
    assert pdf_path.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in target.parent.iterdir()) == ["rmse.pdf", "rmse.png"]
    assert oct(os.stat(png_path).st_mode & 0o777) == "0o644"
    _, svg_path = save_figure(figure, tmp_path / "fresh" / "rmse.png", vector_format="svg", dpi=TEST_DPI)
    assert svg_path.suffix == ".svg" and b"<svg" in svg_path.read_bytes()[:2000]


def test_save_figure_is_reproducible(tmp_path, results_one_seed):
    figure = plot_rmse_vs_data(results_one_seed)
    save_figure(figure, tmp_path / "a.png", dpi=TEST_DPI)
    save_figure(figure, tmp_path / "b.png", dpi=TEST_DPI)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_save_figure_rejects_bad_paths(tmp_path, results_one_seed):
    figure = plot_rmse_vs_data(results_one_seed)
    with pytest.raises(ValueError, match="must end in .png"):
        save_figure(figure, tmp_path / "figure.pdf")
    with pytest.raises(ValueError, match="vector_format"):
        save_figure(figure, tmp_path / "figure.png", vector_format="eps")


# --------------------------------------------------------------------------
# plot_rmse_vs_grid / plot_rmse_vs_data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["test_rmse", "train_rmse"])
def test_rmse_vs_grid_one_seed(tmp_path, results_one_seed, metric):
    figure = plot_rmse_vs_grid(results_one_seed, metric)
    (ax,) = figure.axes
    assert legend_texts(ax) == [*N_LABELS, "$G^{-4}$"]
    assert len(ax.get_lines()) == 5
    assert ax.get_xlabel() == "grid size G"
    assert ax.get_ylabel() == {"test_rmse": "test RMSE", "train_rmse": "train RMSE"}[metric]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.collections) == 0  # one seed: no spread band
    # Reference line follows G^-4 exactly.
    reference = ax.get_lines()[-1]
    assert reference.get_linestyle() == "--"
    x_ref, y_ref = reference.get_xdata(), reference.get_ydata()
    np.testing.assert_allclose(y_ref[-1] / y_ref[0], (x_ref[-1] / x_ref[0]) ** -4.0, rtol=1e-12)
    # The N=100 line carries the published values.
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata()[-1], 1.65 if metric == "test_rmse" else 2.0e-3)
    if metric == "test_rmse":
        assert_saved_and_not_blank(figure, tmp_path / "rmse_vs_grid.png")


def test_rmse_vs_grid_three_seeds_has_spread_bands(results_three_seeds):
    figure = plot_rmse_vs_grid(results_three_seeds)
    (ax,) = figure.axes
    assert legend_texts(ax) == [*N_LABELS, "$G^{-4}$"]
    assert len(ax.get_lines()) == 5
    assert len(ax.collections) == 4  # one min-max band per N


def test_rmse_vs_data(tmp_path, results_one_seed, results_three_seeds):
    figure = plot_rmse_vs_data(results_one_seed)
    (ax,) = figure.axes
    assert legend_texts(ax) == G_LABELS
    assert len(ax.get_lines()) == 5
    assert ax.get_xlabel() == "training-set size N" and ax.get_ylabel() == "test RMSE"
    assert_saved_and_not_blank(figure, tmp_path / "rmse_vs_data.png")
    (ax_seeds,) = plot_rmse_vs_data(results_three_seeds, "train_rmse").axes
    assert legend_texts(ax_seeds) == G_LABELS
    assert len(ax_seeds.collections) == 5


def test_failed_job_is_left_out_of_lines(results_one_seed):
    results = results_one_seed.copy()
    results.loc[(results["n_train"] == 3000) & (results["grid_size"] == 100), "test_rmse"] = np.nan
    (ax,) = plot_rmse_vs_grid(results).axes
    n3000 = ax.get_lines()[3]
    assert list(n3000.get_xdata()) == [5, 10, 20, 50]


def test_several_configurations_are_rejected(results_one_seed):
    mixed = pd.concat([results_one_seed, results_one_seed.assign(function="other")])
    with pytest.raises(ValueError, match="exactly one"):
        plot_rmse_vs_grid(mixed)


# --------------------------------------------------------------------------
# plot_loss_staircase
# --------------------------------------------------------------------------


def test_loss_staircase_one_seed(tmp_path):
    history = make_history(n_seeds=1)
    figure = plot_loss_staircase(history)
    assert len(figure.axes) == 4
    for ax, n_train in zip(figure.axes, SEED_TRAIN_SIZES):
        assert ax.get_title() == f"N={n_train}"
        assert ax.get_yscale() == "log"
        assert legend_texts(ax) == ["train", "test"]
        extension_lines = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        # 5 grid levels -> 4 extensions, at the first step of each later level.
        assert [line.get_xdata()[0] for line in extension_lines] == [10.0, 20.0, 30.0, 40.0]
        labels = [text.get_text().strip() for text in ax.texts]
        assert labels == G_LABELS
    assert_saved_and_not_blank(figure, tmp_path / "staircase.png")


def test_loss_staircase_several_seeds():
    figure = plot_loss_staircase(make_history(n_seeds=3))
    ax = figure.axes[0]
    assert legend_texts(ax) == [f"{kind}, seed {seed}" for seed in range(3) for kind in ("train", "test")]
    assert len([line for line in ax.get_lines() if line.get_linestyle() != ":"]) == 6


def test_loss_staircase_missing_columns():
    with pytest.raises(ValueError, match="missing columns"):
        plot_loss_staircase(make_history().drop(columns="cumulative_step"))


# --------------------------------------------------------------------------
# plot_rmse_heatmap
# --------------------------------------------------------------------------


def test_rmse_heatmap(tmp_path, results_one_seed):
    results = results_one_seed.copy()
    results.loc[(results["n_train"] == 1000) & (results["grid_size"] == 50), "test_rmse"] = np.nan
    figure = plot_rmse_heatmap(results)
    heatmap_ax, colorbar_ax = figure.axes
    annotations = [text.get_text() for text in heatmap_ax.texts]
    assert len(annotations) == 20
    assert annotations[0] == "7.3e-03"  # N=100, G=5
    assert annotations[4] == "1.6e+00" or annotations[4] == "1.7e+00"  # N=100, G=100 (1.65)
    assert annotations[2 * 5 + 3] == "n/a"  # N=1000, G=50 failed
    assert [t.get_text() for t in heatmap_ax.get_xticklabels()] == [str(g) for g in SEED_GRID_SIZES]
    assert [t.get_text() for t in heatmap_ax.get_yticklabels()] == [str(n) for n in SEED_TRAIN_SIZES]
    assert colorbar_ax.get_ylabel() == "log10 test RMSE"
    image = heatmap_ax.get_images()[0].get_array()
    assert image[0, 0] == pytest.approx(np.log10(7.32e-3))
    assert np.ma.is_masked(image[2, 3])
    assert_saved_and_not_blank(figure, tmp_path / "heatmap.png")


def test_rmse_heatmap_three_seeds(results_three_seeds):
    figure = plot_rmse_heatmap(results_three_seeds, "train_rmse")
    assert len(figure.axes[0].texts) == 20
    assert figure.axes[1].get_ylabel() == "log10 train RMSE"


# --------------------------------------------------------------------------
# plot_fitted_power_laws
# --------------------------------------------------------------------------


def test_fitted_power_laws_one_seed(tmp_path, results_one_seed):
    fits = fit_scaling_laws(results_one_seed)
    figure = plot_fitted_power_laws(results_one_seed, fits)
    (ax,) = figure.axes
    labels = legend_texts(ax)
    assert len(labels) == 5 and labels[-1] == "excluded"
    for label, n_train in zip(labels, SEED_TRAIN_SIZES):
        assert label.startswith(f"N={n_train}: $\\alpha$=")
    assert "[" not in labels[0]  # N=100 keeps 2 points: exact fit, no interval
    assert "[" in labels[3]
    fitted_lines = ax.get_lines()
    assert len(fitted_lines) == 4
    # Fitted line for N=3000 matches the table's exponent.
    x_line, y_line = fitted_lines[3].get_xdata(), fitted_lines[3].get_ydata()
    slope = np.log(y_line[-1] / y_line[0]) / np.log(x_line[-1] / x_line[0])
    alpha_3000 = fits.set_index("n_train").loc[3000, "alpha"]
    assert -slope == pytest.approx(alpha_3000, rel=1e-9)
    # Hollow markers: 3 excluded for N=100, 1 for N=300 -> 2 hollow scatter collections.
    hollow = [c for c in ax.collections if c.get_facecolors().size == 0 or c.get_facecolors()[:, 3].max() == 0]
    assert sum(len(c.get_offsets()) for c in hollow) == 4
    # Bands for the 3 fits with a finite interval.
    bands = [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(bands) == 3
    assert_saved_and_not_blank(figure, tmp_path / "fits.png")


def test_fitted_power_laws_three_seeds_in_parameters(tmp_path, results_three_seeds):
    fits = fit_scaling_laws(results_three_seeds, x="n_params")
    assert (fits["ci_method"] == "seed-lines-t").all()
    figure = plot_fitted_power_laws(results_three_seeds, fits)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "number of parameters"
    assert len(ax.get_lines()) == 4
    assert all("[" in label for label in legend_texts(ax)[:4])
    assert_saved_and_not_blank(figure, tmp_path / "fits_seeds.png")


def test_log_axes_are_labelled_at_the_sweep_values(results_one_seed):
    (ax,) = plot_rmse_vs_grid(results_one_seed).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(g) for g in SEED_GRID_SIZES]
    (ax,) = plot_rmse_vs_data(results_one_seed).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(n) for n in SEED_TRAIN_SIZES]
    (ax,) = plot_fitted_power_laws(results_one_seed, fit_scaling_laws(results_one_seed)).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(g) for g in SEED_GRID_SIZES]


def test_fitted_power_laws_error_bars_only_with_several_seeds(results_one_seed, results_three_seeds):
    (ax,) = plot_fitted_power_laws(results_one_seed, fit_scaling_laws(results_one_seed)).axes
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    fits = fit_scaling_laws(results_three_seeds)
    (ax,) = plot_fitted_power_laws(results_three_seeds, fits).axes
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == len(SEED_TRAIN_SIZES)  # one per N, spanning the smallest to the largest seed
    segments = bars[-1].lines[2][0].get_segments()  # N=3000
    spread = results_three_seeds[results_three_seeds["n_train"] == 3000].groupby("grid_size")["test_rmse"]
    lows, highs = sorted(s[:, 1].min() for s in segments), sorted(s[:, 1].max() for s in segments)
    np.testing.assert_allclose(lows, sorted(spread.min()), rtol=1e-12)
    np.testing.assert_allclose(highs, sorted(spread.max()), rtol=1e-12)


def test_fitted_power_laws_group_without_fit(results_one_seed):
    results = results_one_seed.copy()
    results.loc[(results["n_train"] == 300) & (results["grid_size"] > 5), "test_rmse"] = np.nan
    fits = fit_scaling_laws(results)
    (ax,) = plot_fitted_power_laws(results, fits).axes
    assert "N=300: no fit" in legend_texts(ax)
    assert len(ax.get_lines()) == 3


def test_fitted_power_laws_rejects_mixed_fits(results_one_seed):
    fits = pd.concat([fit_scaling_laws(results_one_seed), fit_scaling_laws(results_one_seed, metric="train_rmse")])
    with pytest.raises(ValueError, match="single 'metric'"):
        plot_fitted_power_laws(results_one_seed, fits)


# --------------------------------------------------------------------------
# no global matplotlib state
# --------------------------------------------------------------------------


def test_plotting_leaves_rcparams_alone(results_one_seed):
    before = dict(matplotlib.rcParams)
    plot_rmse_vs_grid(results_one_seed)
    plot_rmse_heatmap(results_one_seed)
    plot_loss_staircase(make_history(steps_per_level=3))
    assert dict(matplotlib.rcParams) == before


def test_modules_import_neither_pyplot_nor_torch():
    package = Path(__file__).resolve().parents[2] / "kanlib" / "analysis"
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        assert not {name for name in imported if "pyplot" in name or name.split(".")[0] == "torch"}, module.name


def _results_row(function="xy", width="2-1-1", n=100, grid=3, test=1e-2):
    return {
        "function": function,
        "width": width,
        "k": 3,
        "n_train": n,
        "seed": 0,
        "grid_size": grid,
        "n_params": 10 * grid,
        "steps": 2,
        "optimizer": "LBFGS",
        "train_rmse": test / 2,
        "test_rmse": test,
        "wall_time_s": 0.1,
        "device": "cpu",
        "mlflow_run_id": f"run{n}{grid}",
    }


@pytest.mark.parametrize("functions", [["xy"], ["xy", "bessel_j0_20x"]])
def test_rmse_vs_grid_figure_one_panel_per_configuration(functions):
    rows = [
        _results_row(function=f, width="2-1-1" if f == "xy" else "1-1", n=n, grid=g, test=1 / g)
        for f in functions
        for n in (100, 200)
        for g in (3, 6)
    ]
    figure = rmse_vs_grid_figure(pd.DataFrame(rows))
    if len(functions) == 1:
        assert figure.axes[0].get_xscale() == "log"
    else:
        assert len(figure.axes) == 2 and all(len(ax.images) == 1 for ax in figure.axes)


def test_chains_that_did_not_learn_are_crosses_not_part_of_the_lines():
    results = make_results(n_seeds=3)
    results["learned_target"] = results["seed"] != 2
    results.loc[results["seed"] == 2, ["test_rmse", "train_rmse"]] = 0.6
    figure = plot_rmse_vs_grid(results)
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    crosses = lines["did not learn the target (4 chains)"]
    assert len(crosses.get_xdata()) == len(results[results["seed"] == 2]) and set(crosses.get_ydata()) == {0.6}
    learnt = results[results["seed"] != 2]
    cells = learnt[learnt["n_train"] == learnt["n_train"].min()].groupby("grid_size")["test_rmse"]
    expected = np.exp(cells.apply(lambda v: np.log(v).mean()).to_numpy())
    first_line = lines[f"N={learnt['n_train'].min()}"]
    np.testing.assert_allclose(first_line.get_ydata(), expected, rtol=1e-12)
