"""The UI in a real browser: Debian's Chromium driven by Playwright's Python client (no browser download). `dg dev`
with a fresh home on 127.0.0.1; the tiny lane launched from its job page; then the adapter, the scores and the
report as a person sees them. Screenshots stay in test-artifacts/ui/."""

import shutil
import time
from pathlib import Path

import pytest

from mh_assets_tests.conftest import REPO
from mh_assets_tests.test_ui import graphql, serve_ui

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = REPO / "test-artifacts" / "ui"
RUNS = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"


def _wait_for_run(port: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in graphql(port, RUNS)["runsOrError"]["results"] if r["jobName"] == "tiny_lane"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return runs[0]
        time.sleep(3)
    raise AssertionError(f"the tiny lane's run did not end within {timeout_s} s")


def test_the_tiny_lane_runs_from_the_ui_and_its_results_render(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve_ui(tmp_path) as port, sync_playwright() as playwright:
        base = f"http://127.0.0.1:{port}"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{base}/locations/mh_assets/jobs/tiny_lane", wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")  # "Join the Dagster community" on a first visit
            if skip.count():
                skip.first.click()
            page.get_by_role("button", name="Materialize all").click()
            run = _wait_for_run(port, timeout_s=1500)
            page.screenshot(path=SHOTS / "run.png", full_page=True)
            assert run["status"] == "SUCCESS", run

            for key, texts in {
                "lora_adapter_tiny": ["swift_command", "swanlab_run_id", "resumed_from_step", "global_step"],
                "benchmark_scores_tiny": ["pceb_mcq"],
                "experiment_report_tiny": ["gates_passed"],
            }.items():
                page.goto(f"{base}/assets/{key}", wait_until="networkidle")
                for text in texts:
                    expect(page.get_by_text(text).first).to_be_visible(timeout=30_000)
                page.screenshot(path=SHOTS / f"{key}.png", full_page=True)
            # long values wrap: the swift command (over the UI's 1,000 characters for inline markdown) opens in a
            # dialog, one option per line, so the metadata table stays about as wide as its panel (inline on one
            # line it was 7,900 px wide); only long paths may still scroll it a little
            page.goto(f"{base}/assets/lora_adapter_tiny", wait_until="networkidle")
            table = page.locator("table", has_text="swift_command").first
            table.scroll_into_view_if_needed()
            panel = table.evaluate("t => t.parentElement.getBoundingClientRect().width")
            assert table.evaluate("t => t.getBoundingClientRect().width") < 1.6 * panel
            page.locator("tr", has_text="swift_command").first.get_by_text("[Show Markdown]").click()
            command = page.get_by_role("dialog").locator("pre").first
            expect(command).to_be_visible(timeout=30_000)
            assert command.inner_text().count("\n  --") > 10
            page.wait_for_timeout(500)  # the dialog fades in
            page.screenshot(path=SHOTS / "lora_adapter_tiny_command.png")
            page.goto(f"{base}/assets/experiment_report_tiny", wait_until="networkidle")
            # the report (its metadata value, behind "[Show Markdown]"): its loss curve is an image inside the text,
            # so it loads where the UI shows it (a relative loss.svg link was a broken image there)
            page.get_by_text("[Show Markdown]").first.click()
            expect(page.get_by_text("Experiment report: mh-sft-tiny-lora")).to_be_visible(timeout=30_000)
            curve = page.locator('img[alt="training loss"]')
            expect(curve.first).to_be_visible(timeout=30_000)
            assert curve.first.get_attribute("src").startswith("data:image/svg+xml")
            assert curve.first.evaluate("img => img.complete && img.naturalWidth > 0")
            curve.first.scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / "experiment_report_tiny_report.png")
        finally:
            browser.close()
