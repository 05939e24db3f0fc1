"""The scaling-law report: kanlib.analysis.report on synthetic tables, then the report rules of a real tiny sweep
(figures, summary, exponent table, MLflow artifacts and metrics, `snakemake --report`)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from kanlib.analysis import catalog, report, tables
from kanlib.analysis.document import to_markdown, to_rst
from kanlib.analysis.metrics import mlflow_metrics
from kanlib.analysis.reference import SEED_TRAIN_SIZES, seed_reference_frame
from kanlib.analysis.summary import answer_document, answer_sentence, build_summary

REPO = Path(__file__).resolve().parents[2]
GRIDS = (5, 10, 20, 50, 100)
SIZES = (100, 300, 1000, 3000)
SEED_CONFIG = {"function": "exp_sin_pi_x_plus_y2", "width": "2-1-1", "k": 3}


# ---- synthetic results tables ---------------------------------------------------------------------------


def sweep_table(
    alpha=4.0,
    sigma_log=0.0,
    seeds=(0,),
    function="exp_sin_pi_x_plus_y2",
    width="2-1-1",
    threshold=lambda n: n / 5,
    grids=GRIDS,
    sizes=SIZES,
    rng_seed=0,
) -> pd.DataFrame:
    """A results table with test RMSE = 0.5 G^-alpha (log-normal noise) up to G* = threshold(N), then
    rising tenfold per level (U-shaped), train RMSE following the power law throughout."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in seeds:
        for n_train in sizes:
            previous = None
            for grid in grids:
                noise = float(rng.lognormal(0.0, sigma_log)) if sigma_log else 1.0
                clean = 0.5 * grid**-alpha * noise
                test = clean if grid <= threshold(n_train) or previous is None else previous * 10.0
                rows.append(
                    {
                        "function": function,
                        "width": width,
                        "k": 3,
                        "n_train": n_train,
                        "seed": seed,
                        "grid_size": grid,
                        "n_params": 3 * (grid + 3) + 6,
                        "steps": 50,
                        "optimizer": "LBFGS",
                        "train_rmse": 0.9 * clean,
                        "test_rmse": test,
                        "wall_time_s": 0.1,
                        "device": "cpu",
                        "mlflow_run_id": f"r{seed}{n_train}{grid}",
                    }
                )
                previous = test
    return pd.DataFrame(rows)


def history_for(results: pd.DataFrame, steps=4) -> pd.DataFrame:
    rows = []
    for (function, width, k, n_train, seed), chain in results.groupby(["function", "width", "k", "n_train", "seed"]):
        cumulative = 0
        for _, level in chain.sort_values("grid_size").iterrows():
            for step in range(steps):
                factor = 1.0 + 2.0 * math.exp(-step)
                rows.append(
                    {
                        "function": function,
                        "width": width,
                        "k": k,
                        "n_train": n_train,
                        "seed": seed,
                        "grid_size": level["grid_size"],
                        "step": step,
                        "cumulative_step": cumulative,
                        "train_rmse": level["train_rmse"] * factor,
                        "test_rmse": level["test_rmse"] * factor,
                    }
                )
                cumulative += 1
    return pd.DataFrame(rows)


def summary_of(results: pd.DataFrame, sweep="synthetic") -> str:
    return to_markdown(build_summary(results, tables.exponent_table(results), sweep))


def answer_line(markdown: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith("**Answer.**"))


def markdown_tables(markdown: str) -> list[pd.DataFrame]:
    """Every pipe table of ``markdown`` as a DataFrame of its cells (text, padding stripped)."""
    found, rows = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
        elif rows:
            found.append(pd.DataFrame(rows[2:], columns=rows[0]))  # rows[1]: the separator
            rows = []
    return found


def table_with(markdown: str, first_column: str, after: str = "") -> pd.DataFrame:
    """The first table whose first column is ``first_column`` (after the line starting with ``after``),
    indexed by that column."""
    text = markdown[markdown.index(after) :] if after else markdown
    table = next(t for t in markdown_tables(text) if t.columns[0] == first_column)
    return table.set_index(first_column)


def alpha_numbers(text: str) -> tuple[str, ...]:
    """``("3.94", "3.55", "4.33", "3000")`` from ``α = 3.94 [3.55, 4.33] at N=3000``."""
    return re.search(r"α = (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\] at N=(\d+)", text).groups()


def thresholds_in(answer: str) -> dict[int, tuple[int, float]]:
    """N -> (threshold G, params per sample) named by an answer sentence."""
    found = re.findall(r"G=(\d+) \(([\d.]+) params/sample\) for N=(\d+)", answer)
    return {int(n): (int(g), float(ratio)) for g, ratio, n in found}


# ---- the rule file and the library agree ----------------------------------------------------------------


def test_restructuredtext_rendering_parses_without_warnings():
    import docutils.core
    import docutils.nodes

    results = sweep_table()
    exponents = tables.exponent_table(results)
    text = to_rst(answer_document(results, exponents, tables=True))
    tree = docutils.core.publish_doctree(
        text, settings_overrides={"report_level": 1, "halt_level": 5, "warning_stream": False}
    )
    messages = list(tree.findall(docutils.nodes.system_message))
    assert not messages, [m.astext() for m in messages]
    (table,) = tree.findall(docutils.nodes.table)
    rows = [
        [entry.astext() for entry in row.findall(docutils.nodes.entry)] for row in table.findall(docutils.nodes.row)
    ]
    fit = exponents[(exponents["x"] == "grid_size") & (exponents["metric"] == "test_rmse")].set_index("n_train")
    by_n = {row[0]: row for row in rows[1:]}
    assert rows[0][:2] == ["N", "test RMSE vs G"] and by_n["3000"][1] == f"{fit.loc[3000, 'alpha']:.2f} [4.00, 4.00]"


def test_every_catalog_figure_has_its_caption_and_every_caption_is_used():
    captions = {path.stem for path in (REPO / "workflow/report").glob("*.rst")}
    for spec in catalog.FIGURES:
        assert spec.caption in captions, spec.stem
    assert len(set(catalog.figure_stems())) == len(catalog.FIGURES)
    # the captions that are not figures' belong to the summary files and the front page
    rules = (REPO / "workflow/rules/report.smk").read_text() + (REPO / "Snakefile").read_text()
    for caption in captions - {spec.caption for spec in catalog.FIGURES}:
        assert f"report/{caption}.rst" in rules, caption


def test_library_imports_neither_torch_nor_matplotlib():
    code = "import sys, kanlib.analysis.report; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- exponents -------------------------------------------------------------------------------------------


def test_exponent_table_recovers_known_exponent_with_interval():
    results = sweep_table(alpha=4.0, sigma_log=0.05, threshold=lambda n: 1e9, rng_seed=3)
    results["test_median_rmse"] = results["test_rmse"] / 3  # a constant factor: the same exponent
    results["test_interior_rmse"] = results["test_rmse"] / 5
    exponents = tables.exponent_table(results)
    assert len(exponents) == len(tables.FIT_SPECS) * len(SIZES)
    by_metric = exponents[exponents["x"] == "grid_size"].set_index(["metric", "n_train"])["alpha"]
    np.testing.assert_allclose(by_metric["test_median_rmse"], by_metric["test_rmse"], rtol=1e-9)
    np.testing.assert_allclose(by_metric["test_interior_rmse"], by_metric["test_rmse"], rtol=1e-9)
    assert [tuple(pair) for pair in exponents[["x", "metric"]].drop_duplicates().to_numpy()] == list(tables.FIT_SPECS)
    main = exponents[(exponents["x"] == "grid_size") & (exponents["metric"] == "test_rmse")].set_index("n_train")
    assert (
        (abs(main["alpha"] - 4.0) < 0.2).all() and (main["theory_alpha"] == 4).all() and (main["n_points"] == 5).all()
    )
    covered = (main["alpha_low"] < 4.0) & (4.0 < main["alpha_high"])
    assert covered.sum() >= 3, main[["alpha", "alpha_low", "alpha_high"]]  # 95% intervals: 3 or 4 of 4


def test_mlflow_metric_names_one_and_several_configurations():
    results = sweep_table(threshold=lambda n: n / 5)
    metrics = mlflow_metrics(tables.exponent_table(results))
    assert metrics["alpha_test_rmse_vs_grid_N3000"] == pytest.approx(4.0, abs=1e-9)
    assert {
        "alpha_test_rmse_vs_grid_N3000_ci_low",
        "alpha_test_rmse_vs_grid_N3000_ci_high",
        "alpha_train_rmse_vs_grid_N3000",
        "alpha_test_rmse_vs_params_N3000",
        "alpha_train_rmse_vs_params_N3000",
    } <= set(metrics)
    assert metrics["threshold_grid_N100"] == 20 and "threshold_grid_N3000" not in metrics
    assert metrics["threshold_params_per_sample_N100"] == pytest.approx((3 * 23 + 6) / 100)
    assert all(math.isfinite(v) for v in metrics.values())
    both = pd.concat([results, sweep_table(function="xy")])
    names = set(mlflow_metrics(tables.exponent_table(both)))
    assert {
        "alpha_test_rmse_vs_grid_exp_sin_pi_x_plus_y2_w2-1-1_N3000",
        "alpha_test_rmse_vs_grid_xy_w2-1-1_N3000",
        "threshold_grid_xy_w2-1-1_N100",
    } <= names
    assert not any(name.endswith("rmse_vs_grid_N3000") for name in names)


# ---- the summary: the answer's numbers and the tables' values ---------------------------------------------


def test_summary_opens_with_the_answer_and_its_interval():
    results = sweep_table(alpha=4.0, sigma_log=0.05, threshold=lambda n: n / 5 if n < 3000 else 1e9, rng_seed=1)
    exponents = tables.exponent_table(results)
    markdown = to_markdown(build_summary(results, exponents, "synthetic"))
    fit = exponents[(exponents["x"] == "grid_size") & (exponents["metric"] == "test_rmse")].set_index("n_train")
    alpha, low, high = fit.loc[3000, ["alpha", "alpha_low", "alpha_high"]]
    assert low < 4.0 < high  # the truth lies inside the reported interval
    assert markdown.split("\n\n")[1].startswith("**Answer.** ")  # right after the title
    answer = answer_line(markdown)
    assert alpha_numbers(answer) == (f"{alpha:.2f}", f"{low:.2f}", f"{high:.2f}", "3000")
    assert re.search(r"k\+1 = (\d)", answer).group(1) == "4" and re.search(r"G=(\d+)\.\.(\d+)", answer).groups() == (
        "5",
        "100",
    )
    exponent_table = table_with(markdown, "N")
    assert exponent_table.loc["3000", "test RMSE vs G"] == f"{alpha:.2f} [{low:.2f}, {high:.2f}]"
    assert exponent_table.loc["3000", "theory"] == "4"


def test_thresholds_of_u_shaped_curves_in_the_answer_and_the_table():
    # test RMSE bottoms out at G* = N/5: G=20 for N=100, G=50 for N=300 (then rises tenfold a level)
    markdown = summary_of(sweep_table(threshold=lambda n: n / 5))
    answer = answer_line(markdown)
    assert alpha_numbers(answer)[0] == "4.00" and alpha_numbers(answer)[3] == "3000"
    # params per sample at the threshold: n_params(G*) / N with n_params = 3 (G + 3) + 6
    assert thresholds_in(answer) == {100: (20, (3 * 23 + 6) / 100), 300: (50, round((3 * 53 + 6) / 300, 2))}
    thresholds = table_with(markdown, "N", after="### Interpolation threshold")
    assert list(thresholds.loc["100", ["threshold G", "params/sample at threshold", "points used (G)"]]) == [
        "20",
        "0.75",
        "5, 10, 20",
    ]
    assert re.findall(r"G=(\d+):", thresholds.loc["100", "excluded (G: reason)"]) == ["50", "100"]
    assert list(thresholds.loc["300", ["threshold G", "points used (G)"]]) == ["50", "5, 10, 20, 50"]
    assert list(thresholds.loc["3000", ["threshold G", "points used (G)", "excluded (G: reason)"]]) == [
        "none",
        "5, 10, 20, 50, 100",
        "none",
    ]


def test_single_grid_size_gives_no_exponent():
    results = sweep_table(grids=(5,))
    markdown = summary_of(results)
    answer = answer_line(markdown)
    assert re.search(r"α = -?\d", answer) is None and "G=5" in answer
    assert (table_with(markdown, "N")["test RMSE vs G"] == "no fit").all()
    assert not mlflow_metrics(tables.exponent_table(results))  # nothing to log, no NaN metric


def test_two_grid_sizes_give_an_exponent_without_an_interval_and_say_it_once():
    results = sweep_table(grids=(5, 10), threshold=lambda n: 1e9)
    sentence = answer_sentence(results, tables.exponent_table(results))
    assert "α = 4.00 (2 points, no CI)" in sentence and "% CI" not in sentence  # no interval, no level of one


def test_failed_job_nan_row_reaches_the_summary():
    results = sweep_table(threshold=lambda n: 1e9)
    failed = (results["n_train"] == 3000) & (results["grid_size"] == 50)
    results.loc[failed, ["test_rmse", "train_rmse"]] = np.nan
    markdown = summary_of(results)
    listed = markdown[markdown.index("## Grid levels without a finite RMSE") :].splitlines()
    assert [line for line in listed if line.startswith("- ")] == [
        next(line for line in listed if line.startswith("- ") and "N=3000 seed 0 G=50" in line)
    ]
    assert re.search(r"(\d+) grid levels, (\d+) without", markdown).groups() == (str(len(results)), "1")
    assert table_with(markdown, "N \\ G").loc["3000", "50"] == "n/a"
    thresholds = table_with(markdown, "N", after="### Interpolation threshold")
    assert thresholds.loc["3000", "points used (G)"] == "5, 10, 20, 100" and "G=50" in thresholds.loc["3000", "note"]
    assert alpha_numbers(answer_line(markdown)) == ("4.00", "4.00", "4.00", "3000")


def test_several_seeds_give_the_seed_spread_table():
    one = summary_of(sweep_table(sigma_log=0.05))
    assert "**Seed spread" not in one
    results = sweep_table(sigma_log=0.1, seeds=(0, 1, 2), threshold=lambda n: 1e9)
    several = summary_of(results)
    spread = table_with(several, "N \\ G", after="**Seed spread")
    cells = results.groupby(["n_train", "grid_size"])["test_rmse"]
    expected = (cells.max() / cells.min()).unstack()  # largest / smallest seed, printed with 2 decimals
    assert spread.to_numpy().tolist() == expected.map(lambda r: f"{r:.2f}").to_numpy().tolist()
    assert (table_with(several, "N")["seeds"] == "3").all()
    assert set(tables.exponent_table(results)["ci_method"]) == {"seed-lines-t"}


def test_data_size_is_described_not_fitted():
    reference = seed_reference_frame().assign(**SEED_CONFIG, seed=0, n_params=0, steps=50, optimizer="LBFGS")
    reference["n_params"] = 3 * (reference["grid_size"] + 3) + 6
    markdown = summary_of(reference)
    rows = table_with(markdown, "G")
    assert list(rows.loc["5"]) == ["7.32e-03", "6.71e-03", "6.44e-03", "6.77e-03", f"{6.77e-3 / 7.32e-3:.2f}", "no"]
    assert list(rows.loc["100"].iloc[-2:]) == [f"{3.27e-8 / 1.65:.2g}", "yes"]  # ratios below 0.01: 2 digits


def test_seed_comparison_only_for_the_seed_configuration():
    doubled = seed_reference_frame().assign(**SEED_CONFIG, seed=0, steps=50, optimizer="LBFGS")
    doubled["n_params"] = 3 * (doubled["grid_size"] + 3) + 6
    doubled[["test_rmse", "train_rmse"]] *= 2.0
    exponents = tables.exponent_table(doubled)
    comparison = tables.seed_comparison(doubled, exponents)
    # every cell is twice the seed's; both runs' thresholds (same data, scaled) are G=20 for N=100 and
    # G=50 for N=300, none else: 3 + 4 + 5 + 5 cells at or below them
    assert (comparison["cells"], comparison["within_2x"]) == (20, 20)
    assert (comparison["cells_below"], comparison["within_2x_below"]) == (17, 17)
    markdown = summary_of(doubled, "seed")
    section = markdown[markdown.index("### Comparison with the seed's published numbers") :]
    assert re.findall(r"(\d+) of (\d+)", section)[:2] == [("20", "20"), ("17", "17")]
    ratios = table_with(markdown, "N \\ G", after="**Test RMSE, ours / seed's")
    assert list(ratios.index) == [str(n) for n in SEED_TRAIN_SIZES] and (ratios == "2.00").all().all()
    alphas = table_with(markdown, "N", after="**Exponent of test RMSE vs G and threshold")
    assert alphas.loc["3000", "α ours"] == alphas.loc["3000", "α seed's table"]  # scaling by 2 leaves α alone
    assert list(alphas.loc["100", ["threshold G ours", "threshold G seed's table"]]) == ["20", "20"]

    other = doubled.assign(function="xy")
    assert tables.seed_comparison(other) is None
    assert not any("α ours" in t.columns for t in markdown_tables(summary_of(other)))
    assert tables.seed_comparison(doubled.assign(width="2-2-1")) is None
    tiny = sweep_table(grids=(3, 6), sizes=(100, 200))
    assert tables.seed_comparison(tiny) is None
    assert not any("α ours" in t.columns for t in markdown_tables(summary_of(tiny)))
    partial = doubled[doubled["grid_size"].isin([5, 10]) & doubled["n_train"].isin([100, 3000])]
    comparison = tables.seed_comparison(partial)
    assert comparison["ratio_test"].shape == (2, 2) and comparison["cells"] == 4


def test_empty_results_give_a_summary_without_answer_or_table():
    columns = sweep_table().columns
    markdown = summary_of(pd.DataFrame(columns=columns).astype(sweep_table().dtypes.to_dict()))
    assert "empty" in markdown and "**Answer.**" not in markdown and not markdown_tables(markdown)


# ---- figures ----------------------------------------------------------------------------------------------


def rendered_std(figure) -> float:
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(40)
    canvas.draw()
    return float(np.asarray(canvas.buffer_rgba())[..., :3].std())


def test_figure_set_draws_every_figure_with_seed_spread():
    results = sweep_table(sigma_log=0.1, seeds=(0, 1))
    figures = report.figure_set(results, history_for(results), tables.exponent_table(results))
    assert list(figures) == catalog.figure_stems()
    for stem, figure in figures.items():
        assert not any("cannot be drawn" in t.get_text() for t in figure.texts), stem
        assert rendered_std(figure) > 5, stem
    (ax,) = figures["test_rmse_vs_grid"].axes
    assert len([c for c in ax.collections if "Poly" in type(c).__name__]) == len(SIZES)  # seed bands


def test_figure_set_for_a_configuration_whose_jobs_all_failed():
    results = sweep_table(grids=(5, 10), sizes=(100,))
    results[["test_rmse", "train_rmse"]] = np.nan
    history = history_for(results.assign(test_rmse=1.0, train_rmse=1.0)).iloc[0:0]
    figures = report.figure_set(results, history, tables.exponent_table(results))
    assert list(figures) == catalog.figure_stems()
    for stem in ("test_rmse_vs_grid", "test_rmse_heatmap", "loss_staircase"):
        texts = [t.get_text() for t in figures[stem].texts]
        assert any("cannot be drawn" in t for t in texts), (stem, texts)
    assert all(rendered_std(f) > 1 for f in figures.values())


# ---- the workflow: the session's tiny sweep (tests/conftest.py) -------------------------------------------

TINY = "results/test"
TINY_CONFIG = f"{TINY}/report/exp_sin_pi_x_plus_y2/w2-1-1_k3"


def tiny_snakemake(work: Path, *args, env=None, check=True):
    from conftest import tiny_command, tiny_environment

    result = subprocess.run(
        tiny_command(*args), cwd=work, env=env or tiny_environment(), capture_output=True, text=True, timeout=300
    )
    result.output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.output[-6000:]}")
    return result


def report_outputs(work: Path) -> list[Path]:
    figures = [work / TINY_CONFIG / f"{stem}.{ext}" for stem in catalog.figure_stems() for ext in ("png", "pdf")]
    return figures + [
        work / TINY / name
        for name in (
            "summary.md",
            "report/summary.html",
            "report/exponents.csv",
            "report/laws.json",
            "report/mlflow.json",
        )
    ]


@pytest.mark.workflow
def test_tiny_sweep_writes_every_report_output(tiny_sweep):
    import matplotlib.image

    work = tiny_sweep.work
    for path in report_outputs(work):
        assert path.is_file() and path.stat().st_size > 0, path
    for stem in catalog.figure_stems():
        assert float(np.std(matplotlib.image.imread(work / TINY_CONFIG / f"{stem}.png"))) > 0.02, stem
        assert (work / TINY_CONFIG / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    for log in ("report/exp_sin_pi_x_plus_y2/w2-1-1_k3.log", "report/summary.log", "report/mlflow.log"):
        assert (work / TINY / "logs" / log).is_file(), log
    exponents = pd.read_csv(work / TINY / "report/exponents.csv")
    results = pd.read_csv(work / TINY / "results.csv")
    assert len(exponents) == 2 * len(tables.FIT_SPECS) and set(exponents["n_train"]) == set(results["n_train"])
    markdown = (work / TINY / "summary.md").read_text()
    assert markdown.split("\n\n")[1].startswith("**Answer.** ")
    # the test-RMSE table holds results.csv's values (one seed), rows N, columns G
    test_rmse = table_with(markdown, "N \\ G")
    expected = results.pivot(index="n_train", columns="grid_size", values="test_rmse")
    assert test_rmse.to_numpy().tolist() == expected.map(lambda v: f"{v:.2e}").to_numpy().tolist()
    assert list(test_rmse.columns) == [str(g) for g in expected.columns]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((work / TINY / link).is_file() for link in links)  # every embedded figure exists
    assert not any("α ours" in t.columns for t in markdown_tables(markdown))  # no grid of the seed's: no comparison
    page = (work / TINY / "report/summary.html").read_text()
    assert page.count("<table") == len(markdown_tables(markdown)) >= 5
    assert "**" not in page


@pytest.mark.workflow
def test_laws_file_holds_every_fit_with_its_points_config_hash_and_code_version(tiny_sweep):
    import hashlib

    import yaml
    from mlflow.tracking import MlflowClient

    import kanlib

    work = tiny_sweep.work
    laws = json.loads((work / TINY / "report/laws.json").read_text())
    exponents = pd.read_csv(work / TINY / "report/exponents.csv", dtype={"width": str, "points_used": str})
    assert laws["format"] == "kanlib-laws/2" and laws["sweep"] == "test" and laws["family_laws"] == []
    assert len(laws["laws"]) == len(exponents)
    for law, row in zip(laws["laws"], exponents.to_dict("records")):
        assert (law["x"], law["metric"], law["n_train"]) == (row["x"], row["metric"], row["n_train"])
        for key in ("alpha", "alpha_low", "alpha_high", "prefactor"):  # the CSV rounds to 6 digits
            assert (law[key] is None) == math.isnan(row[key]) and (
                law[key] is None or law[key] == pytest.approx(row[key], rel=1e-5)
            ), key
        assert [p["grid_size"] for p in law["points_used"]] == [int(g) for g in str(row["points_used"]).split(",")]
        if law["ci_method"] == "ols-t":  # one seed: the least-squares line through exactly these points
            x, y = (np.log10([p[c] for p in law["points_used"]]) for c in ("x", "y"))
            assert -np.polyfit(x, y, 1)[0] == pytest.approx(law["alpha"], rel=1e-9)
    assert laws["code_version"]["kanlib"] == kanlib.__version__
    # the config hash names the config the parent MLflow run holds as its artifact
    parent = json.loads((work / TINY / "mlflow_parent.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    config = yaml.safe_load(Path(client.download_artifacts(parent["run_id"], "config.yaml")).read_text())
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert laws["config_hash"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.workflow
def test_parent_run_has_report_artifacts_and_alpha_metrics(tiny_sweep, tmp_path):
    from mlflow.tracking import MlflowClient

    work = tiny_sweep.work
    logged = json.loads((work / TINY / "report/mlflow.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    parent = client.get_run(logged["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["mlflow.runName"] == "test"
    top = {a.path for a in client.list_artifacts(logged["run_id"], "report")}
    assert top >= {"report/summary.md", "report/summary.html", "report/exponents.csv", "report/exp_sin_pi_x_plus_y2"}
    logged_laws = json.loads(
        Path(client.download_artifacts(logged["run_id"], "report/laws.json", str(tmp_path))).read_text()
    )
    assert logged_laws == json.loads((work / TINY / "report/laws.json").read_text())
    folder = "report/exp_sin_pi_x_plus_y2/w2-1-1_k3"
    assert {a.path for a in client.list_artifacts(logged["run_id"], folder)} == {
        f"{folder}/{stem}.{ext}" for stem in catalog.figure_stems() for ext in ("png", "pdf")
    }
    expected = mlflow_metrics(pd.read_csv(work / TINY / "report/exponents.csv", dtype={"width": str}))
    assert any(name.startswith("alpha_test_rmse_vs_grid_N") for name in expected)
    assert expected == logged["metrics"]
    for name, value in expected.items():
        assert parent.data.metrics[name] == pytest.approx(value, rel=1e-5), name


@pytest.mark.workflow
def test_parent_run_description_and_experiment_open_on_the_answer(tiny_sweep):
    from mlflow.tracking import MlflowClient

    work = tiny_sweep.work
    logged = json.loads((work / TINY / "report/mlflow.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    tags = client.get_run(logged["run_id"]).data.tags
    assert tags["kanlib.sweep"] == "test" and tags["kanlib.role"] == "parent"
    note = tags["mlflow.note.content"]
    answer = (work / TINY / "report/answer.md").read_text()
    assert answer.startswith("**Answer.** ") and note.startswith(answer)
    alpha, n_train = re.search(r"α = (.+?) at N=(\d+)", answer).groups()
    assert table_with(note, "N").loc[n_train, "test RMSE vs G"] == alpha  # the exponent table follows the answer
    experiment = client.get_experiment_by_name("kan-scaling")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.workflow
def test_snakemake_report_html_has_every_figure_and_caption(tiny_sweep):
    work = tiny_sweep.work
    result = tiny_snakemake(work, "--report", "report.html")
    assert "Report created" in result.output
    page = (work / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and len(page) > 100_000
    for name in [*(f"{stem}.png" for stem in catalog.figure_stems()), "summary.html", "summary.md", "exponents.csv"]:
        assert name in page, name
    # families.rst captions the KAN-against-MLP figure, drawn only in sweeps with MLPs (test_mlp_family.py),
    # frontier.rst the data axis's, drawn only with 3 or more N (test_presets.py, the data-axis miniature)
    only_some = {"families.rst", "frontier.rst"}
    captions = sorted(p for p in (REPO / "workflow/report").glob("*.rst") if p.name not in only_some)
    for caption in captions:  # each caption's bold opening phrase (the global one: its first line)
        text = caption.read_text()
        bold = re.search(r"\*\*(.+?)\*\*", text)
        phrase = bold.group(1) if caption.name != "workflow.rst" else "KAN scaling-law sweep"
        phrase = re.sub(r"\{\{.*?\}\}", "", phrase).split("``")[0].strip()
        assert phrase and phrase in page, (caption.name, phrase)
    # every category the report rules and the catalog give (but the families' and the data axis's)
    rules = (REPO / "workflow/rules/report.smk").read_text()
    categories = set(re.findall(r'category="([^"]+)"', rules)) | {spec.category for spec in catalog.FIGURES}
    for category in categories - {"0. KAN against MLP", "0. Data axis"}:
        assert category in page, category
    assert "G^-4 (alpha = k + 1)" in page  # Jinja in the captions was rendered with the wildcards
    # the front page starts with the answer, before the sweep's description
    answer = (work / TINY / "report/answer.md").read_text().removeprefix("**Answer.** ")
    opening = answer[: min(40, *(i for i, c in enumerate(answer + "α") if not c.isascii()))]  # plain text
    assert opening and 0 < page.find(opening) < page.find("Kolmogorov-Arnold networks")


@pytest.mark.workflow
def test_report_files_survive_an_unreachable_tracking_store(tiny_sweep, tmp_path):
    """With MLflow unreachable only report_mlflow fails (naming the URI); the report files are written.
    The same command, once the store is back, logs them and sets the parent FINISHED."""
    from conftest import tiny_environment
    from mlflow.tracking import MlflowClient

    work = tmp_path / "work"
    shutil.copytree(tiny_sweep.work, work, symlinks=True)
    (work / "config" / "extra.yaml").write_text("mlflow: {retry_seconds: 1}\n")
    for path in report_outputs(work)[-5:]:  # summary.md, summary.html, exponents.csv, laws.json, mlflow.json
        path.unlink()
    down = tiny_snakemake(work, check=False, env=tiny_environment(MLFLOW_TRACKING_URI="http://127.0.0.1:9"))
    assert down.returncode != 0
    assert "report_mlflow: MLflow tracking store http://127.0.0.1:9 is unreachable" in down.output
    assert "Finished jobid" in down.output and "(Rule: report_summary)" in down.output
    for path in report_outputs(work)[:-1]:
        assert path.is_file(), path
    assert not (work / TINY / "report/mlflow.json").exists()

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    run_id = json.loads((work / TINY / "mlflow_parent.json").read_text())["run_id"]
    name = next(n for n in client.get_run(run_id).data.metrics if n.startswith("alpha_"))
    before = len(client.get_metric_history(run_id, name))
    again = tiny_snakemake(work)
    assert "(Rule: report_mlflow)" in again.output and "(Rule: train)" not in again.output
    assert "(Rule: report_summary)" not in again.output  # the files written while MLflow was down are kept
    assert (work / TINY / "report/mlflow.json").is_file()
    assert len(client.get_metric_history(run_id, name)) == before + 1
    assert client.get_run(run_id).info.status == "FINISHED"


def test_chains_that_did_not_learn_the_target_are_counted_and_left_out_of_the_fits():
    learning = sweep_table(alpha=4.0, sigma_log=0.1, seeds=(0, 1, 2), threshold=lambda n: 1e9, rng_seed=5)
    learning["learned_target"] = True
    stuck = sweep_table(seeds=(3,), threshold=lambda n: 1e9)
    stuck["test_rmse"] = stuck["train_rmse"] = 0.6  # the labels' mean, at every level
    stuck["learned_target"], stuck["judged_relative_train_rmse"] = False, 0.45
    mixed = pd.concat([learning, stuck], ignore_index=True)
    # the fits are those of the learning chains alone (the stuck seed would pull every seed average up)
    ours, reference = tables.exponent_table(mixed), tables.exponent_table(learning)
    pd.testing.assert_frame_equal(ours, reference)
    markdown = summary_of(mixed)
    assert f"**{len(SIZES)} of {4 * len(SIZES)} chains did not learn the target**" in markdown
    assert alpha_numbers(answer_line(markdown)) == alpha_numbers(answer_line(summary_of(learning)))
    # every chain stuck: no exponent, and the answer says why
    assert "No exponent" in answer_line(summary_of(stuck))
    assert tables.exponent_table(stuck)["alpha"].isna().all() or tables.exponent_table(stuck).empty
