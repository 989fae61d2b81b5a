"""`slimdiff serve`'s page in a real headless Chromium (Debian's chromium and chromium-driver; skipped with the
reason when they are absent, except under CI, where they must be there): generate → progress → result →
download, at 1280×800. Screenshots go to a temporary folder, or to docs/img/ when SLIMDIFF_REFRESH_SCREENSHOTS
is set (how the README's are made), so a test run never changes the checkout."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from slimdiff.serve.server import load_generator

from .conftest import start

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TINY_TEACHER = Path(__file__).parents[2] / "src" / "slimdiff" / "assets" / "tiny-teacher"
DOCS_IMG = Path(__file__).parents[2] / "docs" / "img"


@pytest.fixture
def shots(tmp_path):
    return DOCS_IMG if os.environ.get("SLIMDIFF_REFRESH_SCREENSHOTS") else tmp_path


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must install them")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags this machine needs: no sandbox as root, no GPU, and no background connections to the
    # outside (the network is closed).
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    # the page's viewport is 1280×800 exactly, whatever the window around it
    metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_folder):
    """The shipped tiny teacher beside a slim student of its size (random weights: the page is what is tested;
    the README's screenshots take a trained one from SLIMDIFF_SCREENSHOT_STUDENT, e.g. the demo's student)."""
    folder, trained = (
        tmp_path_factory.mktemp("page") / "slim-student",
        os.environ.get("SLIMDIFF_SCREENSHOT_STUDENT"),
    )
    student = shutil.copytree(trained, folder) if trained else tiny_folder(folder, 0, size=32)
    generator = load_generator(student, str(TINY_TEACHER))
    url, stop = start(generator)
    yield url, generator
    stop()


def test_generate_progress_result_download(page, browser, gate, shots, downloads):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(page[0] + "/")
    button = wait.until(ready.element_to_be_clickable((By.ID, "generate")))
    assert Select(browser.find_element(By.ID, "sampler")).first_selected_option.text == "dpm++"  # the CLI's
    assert "params" in browser.find_element(By.ID, "teacher-info").text
    assert "× fewer parameters" in browser.find_element(By.ID, "buys").text
    Select(browser.find_element(By.ID, "sampler")).select_by_value("ddim")  # a stitchable solver
    for name, value in (("steps", "8"), ("seed", "3"), ("n", "2")):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    button.click()

    # progress: the gate holds the student after its first step
    assert gate.reached.wait(30)
    wait.until(lambda d: "step 1 of 8" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "cancel").is_enabled() and not button.is_enabled()
    assert 0 < float(browser.find_element(By.ID, "progress").get_attribute("value")) < 1
    assert "step 1 of 8" in browser.find_element(By.ID, "waiting-student").text
    browser.save_screenshot(str(shots / "serve-progress.png"))
    gate.open()

    # the result: student | teacher | stitched, beside the form and above the fold
    wait.until(lambda d: d.find_element(By.ID, "status").text == "done")
    figures = browser.find_elements(By.CSS_SELECTOR, "#results figure")
    assert [f.get_attribute("data-role") for f in figures] == ["student", "teacher", "stitched"]
    form = browser.find_element(By.ID, "form").rect
    for figure in figures:
        box = figure.rect
        assert box["x"] >= form["x"] + form["width"] and box["y"] + box["height"] <= 800
        assert len(figure.find_elements(By.CSS_SELECTOR, "img.result")) == 2
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "figcaption")]
    assert all("ddim · 8 steps · seed 3" in c and c.endswith("s/image)") for c in captions)
    assert not any("/" in c.split(" · ")[0] for c in captions)  # model names, not file paths
    assert "speed-up against the teacher" in browser.find_element(By.ID, "speedup").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history button")) == 1
    browser.save_screenshot(str(shots / "serve.png"))

    # download: the PNG the page shows
    link = figures[0].find_element(By.CSS_SELECTOR, "a.download")
    name = link.get_attribute("download")
    assert name.startswith("student-slim-student-ddim-8steps-seed3-0") and name.endswith(".png")
    link.click()
    target = downloads / name
    deadline = time.monotonic() + 30
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    shown = figures[0].find_element(By.CSS_SELECTOR, "img.result").get_attribute("src")
    assert target.read_bytes() == base64.b64decode(shown.split(",", 1)[1])

    # a bad parameter: a message on the page, the images kept, no traceback
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("0")
    button.click()
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    error = browser.find_element(By.ID, "error").text
    assert "steps: Input should be greater than or equal to 1" in error and "Traceback" not in error
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results figure")) == 3


def test_cancel_from_the_page(page, browser, gate):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    url, generator = page
    browser.get(url + "/")
    wait.until(ready.element_to_be_clickable((By.ID, "generate"))).click()
    assert gate.reached.wait(30)
    wait.until(ready.element_to_be_clickable((By.ID, "cancel"))).click()
    wait.until(lambda d: generator.cancelled.is_set())  # the cancel reached the server while the run is held
    gate.open()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("cancelled"))
    assert browser.find_element(By.ID, "generate").is_enabled()
    assert not browser.find_elements(By.CSS_SELECTOR, "#results figure")  # no half-made column is left


@pytest.fixture(scope="module")
def class_page(tmp_path_factory, tiny_condition_unet):
    """A class-conditional model saved with its class names, served alone."""
    from slimdiff.diffusion import training_scheduler
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    folder = tmp_path_factory.mktemp("classes") / "animals"
    pipe = SlimDiffusionPipeline(unet=tiny_condition_unet(classes=3), scheduler=training_scheduler())
    pipe.save_pretrained(folder)
    (folder / "class_names.json").write_text(json.dumps(["cat", "dog", "owl"]))
    url, stop = start(load_generator(str(folder)))
    yield url
    stop()


def test_class_names_and_an_uploaded_image(class_page, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(class_page + "/")
    button = wait.until(ready.element_to_be_clickable((By.ID, "generate")))
    classes = Select(browser.find_element(By.ID, "label"))
    assert [o.text for o in classes.options] == ["cat (0)", "dog (1)", "owl (2)"]
    classes.select_by_visible_text("owl (2)")
    assert not browser.find_element(By.ID, "stitch-box").is_displayed()  # no teacher, no stitching
    upload = tmp_path / "start.png"
    Image.new("RGB", (40, 24), (200, 30, 30)).save(upload)
    browser.find_element(By.ID, "init").send_keys(str(upload))
    wait.until(lambda d: d.find_element(By.ID, "init-settings").is_displayed())
    strength = browser.find_element(By.ID, "strength")
    strength.clear()
    strength.send_keys("0.5")
    button.click()
    wait.until(lambda d: d.find_element(By.ID, "status").text == "done")
    caption = browser.find_element(By.CSS_SELECTOR, "figcaption").text
    assert (
        caption.startswith("animals · owl · dpm++ · 20 steps")
        and "from the uploaded image, strength 0.5" in caption
    )
    assert browser.find_element(By.ID, "speedup").text == ""  # nothing to compare with
