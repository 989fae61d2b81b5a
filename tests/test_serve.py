"""`slimdiff serve`: the JSON API on tiny models, and the page in a real headless Chromium (Debian's chromium and
chromium-driver; skipped with the reason when they are absent, except under CI, where they must be there)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request

import pytest
import torch
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.models.unet import SlimUNet2DModel
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.sampling.schedule import training_scheduler
from slimdiff.serve.server import load_generator, make_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def tiny_folder(path, seed: int, widths=(8, 16)):
    torch.manual_seed(seed)
    unet = SlimUNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=widths,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=4,
    )
    SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    student, teacher = tiny_folder(root / "student", 0), tiny_folder(root / "teacher", 1, (16, 16))
    httpd = make_server(load_generator(student, teacher), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def post(url: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url + "/api/generate", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_server_binds_to_localhost_by_default(server):
    assert server.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server + "/api/info", timeout=10) as response:
        info = json.loads(response.read())
    assert info["teacher"] and "ddim" in info["single_step_samplers"] and info["classes"] is None


def test_generate_returns_student_teacher_and_stitched_images(server):
    status, answer = post(server, {"sampler": "ddim", "steps": 4, "seed": 3, "n": 2, "stitch": 0.5})
    assert status == 200, answer
    names = [r["name"] for r in answer["results"]]
    assert len(names) == 3 and names[2].startswith("stitched (0.5")
    for result in answer["results"]:
        assert len(result["images"]) == 2 and result["images"][0].startswith("data:image/png;base64,")
        assert result["seconds"] > 0
    # the same seed draws the same images
    again = post(server, {"sampler": "ddim", "steps": 4, "seed": 3, "n": 2, "stitch": 0.5})[1]
    assert again["results"][0]["images"] == answer["results"][0]["images"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"steps": 0}, "steps must lie in"),
        ({"steps": "many"}, "steps must be a number"),
        ({"sampler": "magic"}, "unknown solver"),
        ({"sampler": "dpm++", "stitch": 0.5}, "single-step solver"),
        (b"{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_parameters_are_one_line_not_a_traceback(server, payload, message):
    status, answer = post(server, payload)
    assert status == 400 and message in answer["error"]
    assert "Traceback" not in answer["error"] and "\n" not in answer["error"]


def test_serve_command_refuses_a_missing_model(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing"), "--port", "0"])
    assert result.exit_code == 2 and "is neither a model folder nor a hub id" in result.output


@pytest.fixture(scope="module")
def browser():
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
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_generates_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    button = wait.until(ready.element_to_be_clickable((By.ID, "generate")))
    Select(browser.find_element(By.ID, "sampler")).select_by_value("ddim")
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("3")
    button.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.result")) >= 3)
    images = browser.find_elements(By.CSS_SELECTOR, "img.result")
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) == 8 for img in images)
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "figcaption.seconds")]
    assert len(captions) == 3 and all(c.endswith(" s") for c in captions)

    # a bad parameter: a message on the page, no images lost, no traceback
    steps.clear()
    steps.send_keys("0")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    error = browser.find_element(By.ID, "error").text
    assert "steps must lie in" in error and "Traceback" not in error


def test_class_conditional_model_takes_label_and_guidance(tmp_path):
    from slimdiff.models.unet import SlimUNet2DConditionModel
    from slimdiff.serve.server import BadRequest, Generator

    torch.manual_seed(0)
    unet = SlimUNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=4,
        cross_attention_dim=12,
        num_context_classes=5,
    ).eval()
    pipe = SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler())
    pipe.set_progress_bar_config(disable=True)
    generator = Generator(pipe)
    assert generator.info()["classes"] == 5 and generator.info()["guidance"]
    answer = generator.run({"steps": 2, "label": 3, "guidance": 2.0, "n": 1})
    assert answer["class_labels"] == 3 and answer["guidance_scale"] == 2.0
    assert len(answer["results"]) == 1 and len(answer["results"][0]["images"]) == 1
    with pytest.raises(BadRequest, match="label must lie in"):
        generator.run({"steps": 2, "label": 9})
