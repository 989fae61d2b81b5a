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
from slimdiff.diffusion import training_scheduler
from slimdiff.models.unet import SlimUNet2DModel
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.serve.http import make_server
from slimdiff.serve.server import load_generator

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


def test_class_conditional_model_takes_label_and_guidance(tiny_condition_unet):
    from slimdiff.serve.server import BadRequest, Generator

    unet = tiny_condition_unet(classes=5)
    pipe = SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler())
    pipe.set_progress_bar_config(disable=True)
    generator = Generator(pipe)
    assert generator.info()["classes"] == 5 and generator.info()["guidance"]
    answer = generator.run({"steps": 2, "label": 3, "guidance": 2.0, "n": 1})
    assert answer["class_labels"] == 3 and answer["guidance_scale"] == 2.0
    assert len(answer["results"]) == 1 and len(answer["results"][0]["images"]) == 1
    with pytest.raises(BadRequest, match="label must lie in"):
        generator.run({"steps": 2, "label": 9})


# --- a hostile peer: any page the user's browser opens can reach 127.0.0.1 (issue 27) ---


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """One request with exactly the given headers (urllib adds and checks its own)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    sent = {"Host": parts.netloc, "Content-Type": "application/json", "Content-Length": str(len(body))}
    for name, value in {**sent, **(headers or {})}.items():
        if value is not None:
            connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, json.loads(payload) if payload else {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"steps": 1e400}', "finite"),
        (b'{"stitch": 1e400}', "finite"),
        (b'{"seed": -1e400}', "finite"),
        (b'{"steps": true}', "must be a number"),
        (b'{"seed": {"a": 1}}', "must be a number"),
        (b'{"steps": 2.5}', "whole number"),
        (b'{"sampler": ["ddim"]}', "sampler must be a string"),
        (b'{"steps": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_00 + b"]" * 100_00, "not valid JSON"),
    ],
)
def test_malformed_values_are_400_with_one_line(server, body, message):
    status, answer = raw(server, "POST", "/api/generate", body)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Content-Length": "lots"}, 400, "Content-Length"),
        ({"Content-Length": "-5"}, 400, "Content-Length"),
        ({"Content-Length": None}, 400, "Content-Length"),
        ({"Content-Length": str(200 * 2**20)}, 413, "at most"),
        ({"Content-Type": "text/plain"}, 415, "application/json"),
        ({"Content-Type": None}, 415, "application/json"),
        ({"Origin": "https://evil.example"}, 403, "evil.example"),
        ({"Host": "evil.example"}, 403, "Host"),
    ],
)
def test_requests_a_foreign_page_could_send_are_refused(server, headers, status, message):
    body = b'{"steps": 1, "sampler": "ddim"}'
    got, answer = raw(
        server, "POST", "/api/generate", body if headers.get("Content-Length") is None else b"", headers
    )
    assert got == status and message in answer["error"]


def test_rebinding_host_is_refused_for_the_page_too(server):
    assert raw(server, "GET", "/api/info", headers={"Host": "attacker.example:80"})[0] == 403
    port = server.rsplit(":", 1)[1]
    status, info = raw(server, "GET", "/api/info", headers={"Host": f"localhost:{port}"})
    assert status == 200 and "samplers" in info
    # the page's own requests carry its own origin and pass
    own = {"Origin": server}
    assert raw(server, "POST", "/api/generate", b'{"steps": 1, "sampler": "ddim"}', own)[0] == 200


def test_host_allowed_names_this_server_only():
    from slimdiff.serve.http import host_allowed

    assert host_allowed("127.0.0.1:7860", "127.0.0.1", 7860)
    assert host_allowed("localhost:7860", "127.0.0.1", 7860)
    assert host_allowed("[::1]:7860", "127.0.0.1", 7860)
    assert not host_allowed("127.0.0.1:7861", "127.0.0.1", 7860)
    assert not host_allowed("evil.example:7860", "127.0.0.1", 7860)
    assert not host_allowed("127.0.0.1:notaport", "127.0.0.1", 7860)
    # bound to every interface: IP literals (not rebindable) pass, DNS names do not
    assert host_allowed("192.0.2.7:7860", "0.0.0.0", 7860)
    assert not host_allowed("evil.example:7860", "0.0.0.0", 7860)


def test_stalled_peers_time_out_and_cannot_hold_the_server(tmp_path, monkeypatch):
    import socket
    import time

    from slimdiff.serve import http

    monkeypatch.setattr(http, "SOCKET_TIMEOUT", 1.0)
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 2)
    httpd = make_server(load_generator(tiny_folder(tmp_path / "m", 0)), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    url = f"http://127.0.0.1:{port}"
    try:
        stalled = []
        for _ in range(2):  # headers promise a body that never comes
            peer = socket.create_connection(("127.0.0.1", port), timeout=10)
            peer.sendall(
                f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
            )
            stalled.append(peer)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra.sendall(f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert extra.recv(100).startswith(b"HTTP/1.1 503")  # over the bound: refused, not queued forever
        extra.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the stalled ones time out and free their slots
            try:
                with urllib.request.urlopen(url + "/api/info", timeout=5) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        else:
            pytest.fail("the server stayed blocked by peers that never sent their body")
        for peer in stalled:
            peer.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
