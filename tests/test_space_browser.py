"""A real browser (Debian chromium, headless, driven by playwright) uploads a photograph through the Space's page.

The screenshot is kept in tests/artifacts/ (git-ignored). `make test` installs chromium with
space/install_system_deps.sh; under CI=true a missing browser fails this test instead of skipping it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from abaw_hf.space import app as space_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT_MS = 90_000


def require_chromium() -> Path:
    """The browser, or a failure under CI=true (a skip elsewhere) naming the script that installs it."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run space/install_system_deps.sh (make test does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def space_url(tmp_path_factory, save_space_model, served_space):
    model_dir = save_space_model(tmp_path_factory.mktemp("browser_model") / "abaw-tiny")
    space = space_app.AffectSpace(str(model_dir))
    assert "RANDOM WEIGHTS" in " ".join(space.banner_messages)  # said once, in the page's banner
    with served_space(space) as url:
        yield url
    space.pipeline.close()


def test_browser_uploads_a_photograph_and_sees_the_results(space_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    chromium_path = require_chromium()

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "space_image_result.png"
    screenshot.unlink(missing_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(space_url, timeout=TIMEOUT_MS)
            expect(page.locator("#banner")).to_contain_text("SYNTHETIC DEMO DATA", timeout=TIMEOUT_MS)
            page.get_by_role("tab", name="Image").click()
            page.locator("#image-input input[type=file]").set_input_files(str(photo))
            # the upload, as a file (the Space hands it to our decoder as uploaded, never re-encoded)
            expect(page.locator("#image-input")).to_contain_text(photo.name, timeout=TIMEOUT_MS)
            page.locator("#analyse-image").click()
            expect(page.locator("#status")).to_contain_text("1 frame (1 with a face)", timeout=TIMEOUT_MS)
            for plot in ("#va-plot", "#expression-plot", "#au-plot"):
                expect(page.locator(f"{plot} img")).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.locator("#frame-image img")).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.locator("#frame-caption")).to_contain_text("valence", timeout=TIMEOUT_MS)
            expect(page.locator("#table")).to_contain_text("face_found", timeout=TIMEOUT_MS)
            download = page.locator("#csv a")
            expect(download).to_have_attribute("href", re.compile(r"astronaut_predictions\.csv$"), timeout=TIMEOUT_MS)
            csv_lines = page.request.get(download.get_attribute("href")).text().strip().splitlines()
            assert csv_lines[0].startswith("source,frame,face,time,face_found") and len(csv_lines) == 2
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    with Image.open(screenshot) as image:
        assert image.width == 1280 and image.height > 900  # the whole page, results included
