import kanlib.analysis.catalog as catalog

# The report: figures per configuration, the exponent table and the summary per sweep, and their
# upload to the sweep's parent MLflow run. `snakemake --report report.html` collects every report()
# output below with its caption (workflow/report/*.rst). The three rules are quick (pandas and
# matplotlib, no torch, no training): on a cluster they belong in `localrules`.
#
# Settings of the analysis (changing one reruns the report, not the training):
REPORT_SETTINGS = {
    "confidence": 0.95,  # level of the exponent's interval
    "divergence_factor": 10.0,  # test/train RMSE ratio above which a point counts as interpolating
    "target_rmse": 1e-4,  # the family comparison: parameters each family needs for this test RMSE
}

REPORT = f"{RESULTS}/report"
REPORT_CONFIG = (
    f"{REPORT}/{{function}}/w{{width}}_k{{k}}"  # the figures of one (function, width, k)
)
REPORT_SUBCATEGORY = "{function} [{width}] k={k}"

# The figures of a configuration, in report order: the registry kanlib.analysis.catalog.FIGURES
# (file stem, caption file in workflow/report/, report category and labels).
REPORT_FIGURES = catalog.FIGURES

# (function slug, width, k) of every configuration of the sweep, in config order, and their figures.
REPORT_CONFIGURATIONS = sweep.chain_configurations(config)
REPORT_PNGS = [
    f"{REPORT}/{slug}/w{width}_k{k}/{stem}.png"
    for slug, width, k in REPORT_CONFIGURATIONS
    for stem in catalog.figure_stems()
]
# KAN against MLP: one figure per function, when the sweep has MLPs (kanlib.analysis.families)
FAMILY_PNGS = [f"{REPORT}/{slug}/families.png" for slug in sweep.compared_functions(config)]
# The data axis: one figure per function, when the sweep has at least 3 N (kanlib.analysis.frontier)
FRONTIER_PNGS = [f"{REPORT}/{slug}/frontier.png" for slug in sweep.frontier_functions(config)]
REPORT_PDFS = [
    path.removesuffix(".png") + ".pdf" for path in REPORT_PNGS + FAMILY_PNGS + FRONTIER_PNGS
]


rule report_figures:
    """Every figure of one (function, width, k): PNG for the report, PDF beside it."""
    input:
        results=f"{RESULTS}/results.csv",
        history=f"{RESULTS}/history.csv",
    output:
        **{
            spec.stem: report(
                f"{REPORT_CONFIG}/{spec.stem}.png",
                caption=f"../report/{spec.caption}.rst",
                category=spec.category,
                subcategory=REPORT_SUBCATEGORY,
                labels=spec.labels,
            )
            for spec in REPORT_FIGURES
        },
        pdf=[f"{REPORT_CONFIG}/{stem}.pdf" for stem in catalog.figure_stems()],
    log:
        f"{LOGS}/report/{{function}}/w{{width}}_k{{k}}.log",
    wildcard_constraints:
        function=WILDCARDS["function"],
        width=WILDCARDS["width"],
        k=WILDCARDS["k"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        function=function_name,
        settings=REPORT_SETTINGS,
    script:
        "../scripts/report_figures.py"


rule report_families:
    """KAN against MLP for one function: test RMSE against the parameter count, every family, one
    panel per N, with each family's fitted exponent and the reference rates (PNG + PDF)."""
    input:
        results=f"{RESULTS}/results.csv",
    output:
        png=report(
            f"{REPORT}/{{function}}/families.png",
            caption="../report/families.rst",
            category="0. KAN against MLP",
            subcategory="{function}",
            labels={"figure": "test RMSE vs parameters, KAN and MLP"},
        ),
        pdf=f"{REPORT}/{{function}}/families.pdf",
    log:
        f"{LOGS}/report/{{function}}/families.log",
    wildcard_constraints:
        function=WILDCARDS["function"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        function=function_name,
        settings=REPORT_SETTINGS,
    script:
        "../scripts/report_families.py"


rule report_frontier:
    """The data axis of one function: test RMSE over (N, G) with the best grid chosen on validation
    and the threshold line, and each family's best test RMSE against N with its law (PNG + PDF)."""
    input:
        results=f"{RESULTS}/results.csv",
        history=f"{RESULTS}/history.csv",
    output:
        png=report(
            f"{REPORT}/{{function}}/frontier.png",
            caption="../report/frontier.rst",
            category="0. Data axis",
            subcategory="{function}",
            labels={"figure": "best model per N"},
        ),
        pdf=f"{REPORT}/{{function}}/frontier.pdf",
    log:
        f"{LOGS}/report/{{function}}/frontier.log",
    wildcard_constraints:
        function=WILDCARDS["function"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        function=function_name,
        settings=REPORT_SETTINGS,
    script:
        "../scripts/report_frontier.py"


rule report_summary:
    """The exponent table, the summary (Markdown, and HTML for the report) and the fitted laws
    (laws.json, for other tools) of the whole sweep."""
    input:
        results=f"{RESULTS}/results.csv",
        history=f"{RESULTS}/history.csv",
        figures=REPORT_PNGS + FAMILY_PNGS + FRONTIER_PNGS,
        front_template=os.path.join(workflow.basedir, "workflow/report/workflow.rst"),
    output:
        summary_html=report(
            f"{REPORT}/summary.html",
            caption="../report/summary.rst",
            category="1. Summary",
            subcategory=f"sweep {SWEEP}",
            labels={"file": "summary (HTML)"},
        ),
        summary=report(
            f"{RESULTS}/summary.md",
            caption="../report/summary_md.rst",
            category="1. Summary",
            subcategory=f"sweep {SWEEP}",
            labels={"file": "summary (Markdown)"},
        ),
        exponents=report(
            f"{REPORT}/exponents.csv",
            caption="../report/exponents.rst",
            category="1. Summary",
            subcategory=f"sweep {SWEEP}",
            labels={"file": "exponent table (CSV)"},
        ),
        # KAN against MLP per function and N (a header only when the sweep has no MLP)
        families=f"{REPORT}/families.csv",
        # the answer and the exponent tables: the MLflow parent's description, the report's front page
        answer=f"{REPORT}/answer.md",
        front=f"{REPORT}/front.rst",
        # every fitted law at full precision, with the config hash and code version (kanlib.analysis.laws)
        laws=f"{REPORT}/laws.json",
        # the data axis (kanlib.analysis.frontier): its laws per function, family and measure, and its points
        frontier=f"{REPORT}/frontier.csv",
        frontier_points=f"{REPORT}/frontier_points.csv",
    log:
        f"{LOGS}/report/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        sweep=SWEEP,
        settings=REPORT_SETTINGS,
    script:
        "../scripts/report_summary.py"


rule report_mlflow:
    """Log the figures, the summary, the exponent table and the laws to the sweep's parent MLflow run
    (folder report/), each fitted exponent as a metric, and set the parent FINISHED; record what was logged.
    Fails, naming the URI, when the store is unreachable: the report files (other rules' outputs)
    stay, and the same command logs them once the store is back."""
    input:
        pngs=REPORT_PNGS + FAMILY_PNGS + FRONTIER_PNGS,
        pdfs=REPORT_PDFS,
        summary=f"{RESULTS}/summary.md",
        summary_html=f"{REPORT}/summary.html",
        exponents=f"{REPORT}/exponents.csv",
        families=f"{REPORT}/families.csv",
        answer=f"{REPORT}/answer.md",
        laws=f"{REPORT}/laws.json",
        frontier=f"{REPORT}/frontier.csv",
        parent=ancient(PARENT_JSON),
    output:
        f"{REPORT}/mlflow.json",
    log:
        f"{LOGS}/report/mlflow.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/report_mlflow.py"


# Every report output (rule all).
REPORT_OUTPUTS = [
    *REPORT_PNGS,
    *FAMILY_PNGS,
    *FRONTIER_PNGS,
    *REPORT_PDFS,
    f"{RESULTS}/summary.md",
    f"{REPORT}/summary.html",
    f"{REPORT}/exponents.csv",
    f"{REPORT}/families.csv",
    f"{REPORT}/answer.md",
    f"{REPORT}/front.rst",
    f"{REPORT}/laws.json",
    f"{REPORT}/frontier.csv",
    f"{REPORT}/frontier_points.csv",
    f"{REPORT}/mlflow.json",
]
