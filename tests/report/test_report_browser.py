"""Reports opened in a real browser (Debian's headless Chromium): they load from disk with
no script error and no request leaving the machine, every figure draws its traces, and a
screenshot shows a page. Fails, never skips, without Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser import BrowserError, PageLoad, chromium_binary, inspect_png, load
from report_logs import two_batches, write_run
from test_report_page import FIGURES, hostile_run

from instrumentation.report import write_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    try:
        return chromium_binary()
    except BrowserError as error:
        missing = str(error)
    pytest.fail(missing, pytrace=False)


def _opened(run: Path, figures: tuple[str, ...] = FIGURES) -> PageLoad:
    page = load(write_report(run).path)
    assert page.errors == []
    assert page.requests == []
    assert sorted(page.plots) == sorted(figures)
    assert page.undrawn == []
    return page


def test_the_report_of_a_real_run_draws_every_figure(real_run: Path, tmp_path: Path) -> None:
    page = _opened(Path(shutil.copytree(real_run, tmp_path / "run")))

    png = inspect_png(page.screenshot)
    assert png.width == 1280
    assert png.height > 2500  # summary, four figures and the configuration
    assert png.colours >= 3


def test_the_report_of_the_legacy_log_draws_every_figure(legacy_log: Path, tmp_path: Path) -> None:
    page = _opened(Path(shutil.copy(legacy_log, tmp_path)))

    assert page.plots["figure-seeds"] > 20  # bars and markers of 27 seeds
    assert inspect_png(page.screenshot).colours >= 3


def test_markup_in_a_log_does_not_run(tmp_path: Path) -> None:
    # The hostile strings call console.error if they run; `_opened` checks there is none.
    _opened(hostile_run(tmp_path))


def test_a_page_with_a_script_error_is_caught(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())
    report = write_report(run).path
    broken = report.read_text(encoding="utf-8").replace(
        "</main>",
        "<script>undefinedFunction()</script><img src='https://example.com/x.png'></main>",
    )
    report.write_text(broken, encoding="utf-8")

    page = load(report, screenshot=False)

    assert any("undefinedFunction" in error for error in page.errors)
    assert page.requests == ["https://example.com/x.png"]
