"""The Gradio app in a real headless browser (Debian chromium driven by Playwright) on the tiny preset.

Sends text plus an uploaded image with image, audio and video forced, and checks that the answer streams
(several intermediate texts, a decoder progress line), that an <img>, <audio> and <video> render inline, that
the three files are offered for download, and that retry/undo/clear are there (clear empties the chat).
A screenshot is saved in the test's tmp_path (and under $NEXTGPT_TEST_ARTIFACTS when set).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"),
]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]

RECORD_SNAPSHOTS = """() => {
  window.__snaps = [];
  const target = document.querySelector('#chatbot');
  new MutationObserver(() => window.__snaps.push(target.innerText)).observe(
      target, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_pipe):
    from nextgpt.apps.gradio_app import build_demo, launch_demo
    from nextgpt.apps.testing import free_port

    output_dir = tmp_path_factory.mktemp("app-outputs")
    demo = build_demo(tiny_pipe, output_dir=output_dir)
    url = launch_demo(demo, output_dir=output_dir, port=free_port(), block=False)
    yield url
    demo.close()


def test_chat_with_uploaded_image_streams_text_and_renders_generated_media(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    image = tmp_path / "square.png"
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(image)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.set_default_timeout(60_000)
            page.goto(app_url)
            page.locator("#chat-input textarea").wait_for()
            if not page.locator("#force").is_visible():
                page.get_by_role("button", name="generation settings").click()
            for modality in ("image", "audio", "video"):
                page.locator(f"#force input[name={modality}]").check()
            page.locator("#chat-input input[type=file]").set_input_files(str(image))
            page.locator("#chat-input .thumbnail-image").wait_for()  # the upload finished
            page.evaluate(RECORD_SNAPSHOTS)
            page.locator("#chat-input textarea").fill("Describe this picture, then draw, play and film it.")
            page.locator("#chat-input textarea").press("Enter")

            chatbot = page.locator("#chatbot")
            for tag in ("img", "audio", "video"):
                chatbot.locator(f".bot-row {tag}").first.wait_for(state="attached", timeout=120_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            snapshots = page.evaluate("() => window.__snaps")
            downloads = page.locator("#downloads").inner_text()
            controls = {name: page.get_by_role("button", name=name).count() for name in ("Retry", "Undo", "Clear")}
            page.get_by_role("button", name="Clear").first.click()
            chatbot.locator(".bot-row").first.wait_for(state="detached", timeout=10_000)
        finally:
            browser.close()
    artifacts = os.environ.get("NEXTGPT_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "app.png", Path(artifacts) / "app-browser.png")

    distinct = list(dict.fromkeys(s for s in snapshots if s.strip()))
    assert len(distinct) >= 3, f"the answer did not stream; chatbot texts seen: {distinct[:5]}"
    assert any("generating" in s for s in distinct), "no decoder progress line was shown"
    assert (tmp_path / "app.png").stat().st_size > 10_000
    assert all(suffix in downloads for suffix in (".png", ".wav", ".mp4")), downloads
    assert all(controls.values()), f"missing chat controls: {controls}"
