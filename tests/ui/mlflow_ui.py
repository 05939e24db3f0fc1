"""The MLflow UI as a person sees it: pages of a real ``mlflow server`` opened in headless Chromium.

Screenshots of a store's experiment (its runs and its charts), its newest sweep (parent run) and one
of that sweep's child runs::

    .venv/bin/python tests/ui/mlflow_ui.py                        # sqlite:///mlflow.db, experiment kan-scaling
    .venv/bin/python tests/ui/mlflow_ui.py --store sqlite:///path/mlflow.db --sweep seed --out shots/

It starts its own ``mlflow server`` on a free loopback port (kanlib.workflow.mlflow_server, one
worker, telemetry off) against the store, opens the addresses kanlib gives out
(``kanlib.workflow.tracking.ui_link``) in a fresh Chromium profile (what someone opening the UI for
the first time sees), writes one PNG per page to ``--out`` (default ``mlflow-ui-screenshots/``), beside
it the page's text as the browser had it when the picture was taken (``<page>.txt``), and stops the
server. A relative SQLite store (the default ``sqlite:///mlflow.db``) is the one in the current
directory. Chromium resolves no name but the loopback address. tests/ui/test_mlflow_ui.py uses
the same functions on the tiny sweep's store.

Needs Chromium (Debian: ``apt-get install chromium``; ``bash tests/ui/install_chromium.sh`` installs
it when missing and run as root).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1600, 1400)  # pixels: a sweep's page down to its description (the answer) fits
BUDGET_MS = 20_000  # virtual time a page first gets to fetch its data and render (page() retries with more)
TIMEOUT_S = 120.0  # wall-clock bound of one Chromium run


class BrowserError(RuntimeError):
    """Chromium is missing, or failed to load a page."""


def find_chromium() -> str | None:
    """``$KANLIB_CHROMIUM`` (None when it is not an executable), else the first of chromium,
    chromium-browser, google-chrome on PATH."""
    if os.environ.get("KANLIB_CHROMIUM"):
        found = os.environ["KANLIB_CHROMIUM"]
        return found if os.access(found, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(url: str, *, screenshot: Path | None = None, budget_ms: int = BUDGET_MS) -> str:
    """Open ``url`` in headless Chromium with a fresh profile; return the DOM after ``budget_ms`` of
    virtual time (and write a PNG of the page then to ``screenshot``)."""
    binary = find_chromium()
    if binary is None:
        raise BrowserError(
            "Chromium is not installed: run `bash tests/ui/install_chromium.sh` as root (apt-get install chromium)"
        )
    with tempfile.TemporaryDirectory(prefix="kanlib-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",  # root in CI; the page is our own loopback server
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no name but loopback resolves
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={budget_ms}",
        ]
        command += ["--dump-dom"] + ([f"--screenshot={screenshot}"] if screenshot else [])
        try:
            result = subprocess.run(
                [*command, url], capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as error:
            raise BrowserError(f"Chromium did not finish {url} within {TIMEOUT_S:g} s") from error
    if result.returncode != 0 or (screenshot and not Path(screenshot).is_file()):
        raise BrowserError(f"Chromium failed on {url} (status {result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def page(url: str, shows=(), budgets_ms=(BUDGET_MS, 2 * BUDGET_MS, 4 * BUDGET_MS)) -> tuple[list[str], set[str]]:
    """The text pieces and links of ``url``, loaded again with a longer budget until every text of
    ``shows`` is among them (the last try's page otherwise: the caller's assertions say what is missing)."""
    for budget in budgets_ms:
        dom = chromium(url, budget_ms=budget)
        texts = visible_text(dom)
        if all(text in texts for text in shows):
            break
    return texts, links(dom)


def visible_text(dom: str) -> list[str]:
    """The page's text pieces in document order (scripts and styles left out), whitespace collapsed."""
    body = dom[dom.find("<body") :]
    body = re.sub(r"<(script|style|noscript)\b.*?</\1>", " ", body, flags=re.S | re.I)
    pieces = (html.unescape(piece) for piece in re.split(r"<[^>]*>", body))
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


def links(dom: str) -> set[str]:
    """Every ``href`` of the page."""
    return {html.unescape(href) for href in re.findall(r'href="([^"]*)"', dom)}


def text_after(texts: list[str], heading: str) -> str:
    """The page's text that follows the first piece equal to ``heading``, joined by spaces."""
    if heading not in texts:
        raise AssertionError(f"no {heading!r} on the page; its text begins: {texts[:60]}")
    return " ".join(texts[texts.index(heading) + 1 :])


def plain_markdown(line: str) -> str:
    """A Markdown line as its rendered text reads (emphasis and code marks dropped)."""
    return " ".join(re.sub(r"(\*\*|__|\*|`)", "", line).split())


def sweep_pages(store: str, experiment: str, sweep: str | None = None):
    """(experiment id, parent run, one child run or None) of ``sweep`` (default: the newest) in ``store``."""
    from kanlib.workflow import tracking

    client = tracking.connect(store, retry_seconds=5.0)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"error: {store} has no experiment {experiment!r}")
    where = "tags.`kanlib.role` = 'parent'" + (f" and tags.`kanlib.sweep` = '{sweep}'" if sweep else "")
    parents = client.search_runs([found.experiment_id], where, order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise SystemExit(f"error: no sweep {sweep or ''} in experiment {experiment!r} of {store}".replace("  ", " "))
    parent = parents[0]
    children = client.search_runs(
        [found.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=1
    )
    return found.experiment_id, parent, (children[0] if children else None)


def charts_link(server: str, experiment_id: str) -> str:
    """The experiment's chart view: one chart per metric, the runs side by side."""
    from kanlib.workflow.tracking import UI_MODEL_TRAINING

    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_MODEL_TRAINING}&compareRunsMode=CHART"


def screenshots(server: str, experiment_id: str, parent_id: str, child_id: str | None, out: Path) -> list[Path]:
    """PNGs of the experiment (runs, then charts), the parent run and the child run, opened as kanlib's
    links open them, each with its page's text pieces (one a line) in ``<page>.txt``."""
    from kanlib.workflow.tracking import ui_link

    out.mkdir(parents=True, exist_ok=True)
    pages = {
        "experiment": ui_link(server, experiment_id),
        "charts": charts_link(server, experiment_id),
        "sweep": ui_link(server, experiment_id, parent_id),
    }
    if child_id:
        pages["child"] = ui_link(server, experiment_id, child_id)
    written = []
    for name, url in pages.items():
        dom = chromium(url, screenshot=out / f"{name}.png", budget_ms=3 * BUDGET_MS)  # charts come after ~20 s
        (out / f"{name}.txt").write_text("\n".join(visible_text(dom)) + "\n", encoding="utf-8")
        written.append(out / f"{name}.png")
        print(f"{out / f'{name}.png'}  {url}")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db", help="tracking store (default sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default="kan-scaling")
    parser.add_argument("--sweep", help="the sweep's name (default: the newest sweep)")
    parser.add_argument("--out", default="mlflow-ui-screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    from kanlib.workflow import mlflow_server

    experiment_id, parent, child = sweep_pages(args.store, args.experiment, args.sweep)
    with tempfile.TemporaryDirectory(prefix="kanlib-mlflow-ui-") as folder:
        if args.store.startswith(("http://", "https://")):
            server = args.store
        else:
            server = mlflow_server.start(folder, port=0, backend_store_uri=args.store, timeout=120).uri
        try:
            screenshots(server, experiment_id, parent.info.run_id, child and child.info.run_id, Path(args.out))
        except BrowserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        finally:
            mlflow_server.stop(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
