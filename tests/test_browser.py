"""The UI in a real headless Chromium: upload, tune, segment, preview, download, re-segment.

Needs Debian's ``chromium`` (``apt-get install -y chromium chromium-driver``) and the
``playwright`` Python package (no ``playwright install``: the system browser is used).
Leaves a screenshot of the finished page in ``scratch/ui.png`` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)
pytest.importorskip("uvicorn")

from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from segmentation.synthetic import write_phantom  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "scratch" / "ui.png"
RESULT_TIMEOUT_MS = 90_000
#: an upload once took over 30 s to show while other jobs loaded both cores
UPLOAD_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model, serve_app
) -> Iterator[tuple[str, object]]:
    app = create_app(tiny_model, Settings(results_dir=tmp_path_factory.mktemp("results")))
    with serve_app(app) as url:
        yield url, app.state.manager


@pytest.fixture(scope="module")
def page(server) -> Iterator[object]:
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stack")
    image_path, _ = write_phantom(folder, (16, 128, 128), seed=5)
    return image_path.rename(folder / "gonad_phantom.tif")


def set_slider(page, label: str, value: float) -> None:
    number = page.get_by_label(f"number input for {label}")
    number.fill(str(value))
    number.press("Enter")


def fill_text(page, textbox, text: str) -> None:
    """Fill a textbox until the value sticks: Gradio sometimes re-renders a freshly opened
    accordion's textbox with its initial value just after a fill."""
    for _ in range(10):
        textbox.fill(text)
        textbox.press("Tab")
        page.wait_for_timeout(250)
        if textbox.input_value() == text:
            return
    raise AssertionError(f"the textbox kept resetting; last value {textbox.input_value()!r}")


def test_upload_tune_segment_and_resegment(server, page, stack: Path) -> None:
    expect = playwright_sync.expect
    url, manager = server
    page.goto(url)
    segment_button = page.get_by_role("button", name="Segment", exact=True)
    expect(segment_button).to_be_visible(timeout=30_000)

    page.locator("input[type=file]").first.set_input_files([str(stack)])
    expect(page.get_by_text("gonad_phantom.tif").first).to_be_visible(timeout=UPLOAD_TIMEOUT_MS)
    set_slider(page, "Boundary threshold", 0.45)
    page.get_by_text("Advanced").click()
    patch = page.get_by_label("Network window Z,Y,X")
    fill_text(page, patch, "16,64,64")
    min_size = page.get_by_label("Min cell size (voxels)")
    min_size.fill("20")
    min_size.press("Tab")
    max_volume = page.get_by_label("Max cell volume (µm³)")
    segment_button.click()

    preview = page.locator("#germseg-preview img")
    expect(preview).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    assert preview.get_attribute("src").endswith(".gif")
    downloads = page.locator("#germseg-downloads")
    for suffix in ("_labels.tif", "_boundaries.tif", "_cells.csv", "_results.zip"):
        expect(downloads.locator(f"a[href$='gonad_phantom{suffix}']")).to_be_visible()
    summary = page.locator("#germseg-summary")
    expect(summary.get_by_role("gridcell", name="gonad_phantom.tif")).to_be_visible()
    expect(summary.get_by_role("gridcell", name="no", exact=True)).to_be_visible()
    first_job = manager.jobs()[-1]
    assert first_job.request.segmentation.threshold == pytest.approx(0.45)
    assert first_job.request.segmentation.min_size == 20
    assert first_job.request.inference.patch == (16, 64, 64)
    assert first_job.request.segmentation.max_size is None
    assert first_job.request.segmentation.min_volume_um3 is None
    assert first_job.request.segmentation.max_volume_um3 is None

    set_slider(page, "Partition cutoff", 0.7)
    max_volume.fill("5000")
    max_volume.press("Tab")
    resegment_button = page.get_by_role("button", name="Re-segment")
    expect(resegment_button).to_be_enabled(timeout=10_000)
    resegment_button.click()
    reused = summary.get_by_role("gridcell", name="yes", exact=True)
    expect(reused).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    second_job = manager.jobs()[-1]
    assert second_job is not first_job and second_job.network_reused is True
    assert second_job.request.segmentation.cutoff == pytest.approx(0.7)
    assert second_job.request.segmentation.max_volume_um3 == pytest.approx(5000)
    assert second_job.request.inference.patch == (16, 64, 64)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_try_an_example(server, page) -> None:
    expect = playwright_sync.expect
    url, _ = server
    page.goto(url)
    page.get_by_role("button", name="Try an example").click()
    summary = page.locator("#germseg-summary")
    example_row = summary.get_by_role("gridcell", name="germline_example.tif")
    expect(example_row).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#germseg-preview img")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT.with_name("ui_example.png")), full_page=True)


def test_uncalibrated_stack_warns_and_takes_a_voxel_size(server, page, stack: Path,
                                                          tmp_path: Path) -> None:
    import tifffile

    expect = playwright_sync.expect
    url, manager = server
    uncalibrated = tmp_path / "uncalibrated.tif"
    tifffile.imwrite(uncalibrated, tifffile.imread(stack))
    page.goto(url)
    segment_button = page.get_by_role("button", name="Segment", exact=True)
    expect(segment_button).to_be_visible(timeout=30_000)
    page.locator("input[type=file]").first.set_input_files([str(uncalibrated)])
    expect(page.get_by_text("uncalibrated.tif").first).to_be_visible(timeout=UPLOAD_TIMEOUT_MS)
    page.get_by_text("Advanced").click()
    fill_text(page, page.get_by_label("Network window Z,Y,X"), "16,64,64")
    segment_button.click()
    expect(page.get_by_text("records no voxel size").first).to_be_visible(
        timeout=RESULT_TIMEOUT_MS
    )
    assert manager.jobs()[-1].request.voxel_size is None

    fill_text(page, page.get_by_label("Voxel size Z,Y,X (µm)"), "1,0.2,0.2")
    resegment_button = page.get_by_role("button", name="Re-segment")
    expect(resegment_button).to_be_enabled(timeout=10_000)
    resegment_button.click()
    summary = page.locator("#germseg-summary")
    expect(summary.get_by_role("gridcell", name="yes", exact=True)).to_be_visible(
        timeout=RESULT_TIMEOUT_MS
    )
    job = manager.jobs()[-1]
    assert job.request.voxel_size == (1.0, 0.2, 0.2) and job.network_reused is True
    assert job.voxel_size == (1.0, 0.2, 0.2) and job.warnings == ()
