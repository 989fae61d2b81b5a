"""`slimdiff serve`'s API on tiny models: what /api/info reports, the event stream of a generation, cancel,
one generation at a time, image-to-image uploads, and bad parameters answered 400 with one line."""

from __future__ import annotations

import base64
import inspect
import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from slimdiff.cli.sample import sample as sample_command
from slimdiff.deploy.sample_folder import SampleSettings, with_model_defaults
from slimdiff.models.loading import load_unet
from slimdiff.models.size import count_params
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.serve.app import make_app
from slimdiff.serve.requests import MAX_UPLOAD_BYTES
from slimdiff.serve.server import BadRequest, Cancelled, Generator, load_generator

from .conftest import events


@pytest.fixture(scope="module")
def generator(pair):
    return load_generator(*pair)


@pytest.fixture(scope="module")
def client(generator):
    return TestClient(make_app(generator, "127.0.0.1", 7860), base_url="http://127.0.0.1:7860")


def generate(client, **params) -> tuple[int, list[dict] | dict]:
    response = client.post("/api/generate", json=params)
    if response.status_code != 200:
        return response.status_code, response.json()
    assert response.headers["content-type"].startswith("text/event-stream")
    return 200, events(response.text.splitlines())


def png_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pixels(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def test_info_reports_what_each_model_costs_and_the_cli_defaults(client, pair):
    info = client.get("/api/info").json()
    for role, folder in zip(("student", "teacher"), pair, strict=True):
        model = info["models"][role]
        assert model["name"] in folder and "/" not in model["name"]
        assert model["params"] == count_params(load_unet(folder)) and model["macs"] > 0
    assert info["models"]["student"]["params"] < info["models"]["teacher"]["params"]
    # the page draws what `slimdiff sample` draws by default for a model that is not step-distilled
    cli = inspect.signature(sample_command).parameters
    assert cli["scheduler"].default.default is None and cli["steps"].default.default is None
    drawn = with_model_defaults(SampleSettings(pair[0], Path("unused")), load_pipeline(pair[0]))
    assert (info["defaults"]["sampler"], info["defaults"]["steps"]) == (drawn.scheduler, drawn.steps)
    assert drawn.scheduler == "dpm++"
    assert info["image_size"] == [8, 8] and info["img2img"] and info["classes"] is None


def test_generation_streams_progress_then_each_model_then_the_speedup(client):
    status, stream = generate(client, sampler="ddim", steps=3, seed=5, n=2, stitch=0.5)
    assert status == 200
    kinds = [e["event"] for e in stream]
    run = ["progress"] * 3 + ["result"]
    assert kinds == ["start", *run, *run, *run, "done"]
    assert stream[0]["runs"] == ["student", "teacher", "stitched"]
    assert [e["step"] for e in stream[1:4]] == [1, 2, 3] and stream[1]["of"] == 3
    results = [e for e in stream if e["event"] == "result"]
    for result in results:
        assert len(result["images"]) == 2 and result["images"][0].startswith("data:image/png;base64,")
        assert (result["sampler"], result["steps"], result["seed"]) == ("ddim", 3, 5)
        assert result["seconds_per_image"] == pytest.approx(result["seconds"] / 2, abs=1e-3)
    assert results[2]["stitch"] == 0.5 and results[0]["stitch"] is None
    seconds = {r["role"]: r["seconds"] for r in results}
    assert stream[-1]["speedup"] == pytest.approx(seconds["teacher"] / seconds["student"], rel=0.02)
    # the same seed draws the same images; the stitched run differs from both
    again = [
        e for e in generate(client, sampler="ddim", steps=3, seed=5, n=2, stitch=0.5)[1] if "images" in e
    ]
    assert again[0]["images"] == results[0]["images"]
    assert results[2]["images"] not in (results[0]["images"], results[1]["images"])


def test_a_multistep_solver_runs_without_the_stitched_column(client):
    status, stream = generate(client, sampler="dpm++", steps=2)
    assert status == 200 and stream[0]["runs"] == ["student", "teacher"]


def test_cancel_stops_between_steps_and_a_second_request_is_409(live, gate):
    with httpx.Client(base_url=live, timeout=60) as http:
        with http.stream("POST", "/api/generate", json={"sampler": "ddim", "steps": 50}) as response:
            lines = response.iter_lines()
            seen = []
            while not any(e["event"] == "progress" for e in seen):
                seen += events([next(lines)])
            assert gate.reached.wait(30)
            busy = http.post("/api/generate", json={"steps": 1})
            assert busy.status_code == 409 and "cancel" in busy.json()["error"]
            assert http.post("/api/cancel", json={}).json() == {"cancelled": True}
            gate.open()
            seen += events(lines)
        assert seen[-1]["event"] == "cancelled" and "student" in seen[-1]["message"]
        # the cancel came while step 2 ran (the gate holds the loop between steps 1 and 2): it is the last
        assert [e["step"] for e in seen if e["event"] == "progress"] == [1, 2]
        assert not any(e["event"] == "result" for e in seen)
        # the server is free again, and nothing is left cancelled
        assert http.post("/api/cancel", json={}).json() == {"cancelled": False}
        assert (
            events(http.post("/api/generate", json={"sampler": "ddim", "steps": 1}).text.splitlines())[-1][
                "event"
            ]
            == "done"
        )


def test_generator_cancel_raises_after_the_current_step(generator):
    job = generator.prepare(generator_request(steps=10))
    seen = []

    def emit(event):
        seen.append(event)
        if event["event"] == "progress" and event["step"] == 2:
            generator.cancel()

    assert generator.busy.acquire(blocking=False)
    try:
        with pytest.raises(Cancelled):
            generator.run(job, emit)
    finally:
        generator.cancelled.clear()
        generator.busy.release()
    assert [e["step"] for e in seen if e["event"] == "progress"] == [1, 2]


def generator_request(**fields):
    from slimdiff.serve.requests import GenerateRequest

    return GenerateRequest(sampler="ddim", **fields)


def test_image_to_image_fits_the_upload_to_the_model(client):
    rng = np.random.default_rng(0)
    upload = Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    status, stream = generate(client, sampler="ddim", steps=4, init_image=png_url(upload), strength=0.0)
    assert status == 200
    student = next(e for e in stream if e["event"] == "result")
    # strength 0 runs no step: the image comes back, centre-cropped and resized to the model's 8×8
    fitted = np.asarray(ImageOps.fit(upload, (8, 8), Image.Resampling.BICUBIC))
    assert np.abs(pixels(student["images"][0]).astype(int) - fitted).max() <= 1
    assert student["strength"] == 0.0
    noised = next(
        e for e in generate(client, sampler="ddim", steps=4, init_image=png_url(upload))[1] if "images" in e
    )
    assert noised["strength"] == 0.8 and noised["images"] != student["images"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"steps": 0}, "steps: Input should be greater than or equal to 1"),
        ({"steps": 201}, "steps: Input should be less than or equal to 200"),
        ({"n": 9}, "n: Input should be less than or equal to 8"),
        ({"steps": "3"}, "steps: Input should be a valid integer"),
        ({"steps": True}, "steps: Input should be a valid integer"),
        ({"steps": 2.5}, "steps: Input should be a valid integer"),
        ({"seed": {"a": 1}}, "seed: Input should be a valid integer"),
        ({"sampler": ["ddim"]}, "sampler: Input should be a valid string"),
        ({"sampler": "magic"}, "unknown solver 'magic'"),
        ({"wish": "pony"}, "wish: Extra inputs are not permitted"),
        ({"sampler": "dpm++", "stitch": 0.5}, "single-step solver"),
        ({"label": 1}, "not class-conditional"),
        ({"guidance": 2.0}, "cannot use guidance"),
        ({"strength": 0.5}, "strength needs an init_image"),
        ({"init_image": "https://example.com/a.png"}, "data:image"),
        ({"init_image": "data:image/png;base64,aGVsbG8="}, "not an image"),
        ({"prompt": "x" * 1001}, "prompt: String should have at most 1000 characters"),
        ([1, 2], "the request: Input should be a valid dictionary"),
    ],
)
def test_bad_parameters_are_400_with_one_line(client, payload, message):
    status, answer = (
        generate(client, **payload)
        if isinstance(payload, dict)
        else (lambda r: (r.status_code, r.json()))(client.post("/api/generate", json=payload))
    )
    assert status == 400 and message in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_an_upload_over_the_limit_is_refused_by_size(client):
    big = "data:image/png;base64," + base64.b64encode(b"\0" * (MAX_UPLOAD_BYTES + 3)).decode()
    status, answer = generate(client, init_image=big, sampler="ddim")
    assert status == 400 and f"at most {MAX_UPLOAD_BYTES}" in answer["error"]


def test_class_names_fill_the_dropdown_and_labels_are_checked(tiny_condition_unet):
    from slimdiff.diffusion import training_scheduler
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline(unet=tiny_condition_unet(classes=3), scheduler=training_scheduler())
    pipe.set_progress_bar_config(disable=True)
    generator = Generator(pipe, labels=["cat", "dog", "owl"])
    info = generator.info()
    assert info["class_names"] == ["cat", "dog", "owl"] and info["guidance"]
    job = generator.prepare(generator_request(steps=2, label=2, guidance=2.0))
    assert job.call["class_labels"] == 2 and job.call["guidance_scale"] == 2.0 and job.condition == "owl"
    with pytest.raises(BadRequest, match=r"label must lie in \[0, 2\], got 3"):
        generator.prepare(generator_request(steps=2, label=3))
    # names that do not match the model's classes are not shown as if they did
    assert Generator(pipe, labels=["cat"]).info()["class_names"] is None


def test_a_slim_decoder_model_reports_the_size_of_the_images_it_draws(tiny_unet, tiny_kl):
    """A latent model with a slim decoder draws pixels at the autoencoder's factor (the page sized its image
    boxes by the latents before) and offers no image-to-image (a slim decoder cannot encode)."""
    from slimdiff.diffusion import training_scheduler
    from slimdiff.models.slim_decoder import slim_decoder_for
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    unet = tiny_unet(channels=4, size=4)
    pipe = SlimDiffusionPipeline(unet=unet, vae=slim_decoder_for(tiny_kl()), scheduler=training_scheduler())
    pipe.set_progress_bar_config(disable=True)
    info = Generator(pipe).info()
    drawn = pipe(num_inference_steps=1, sampler="ddim", output_type="pt").images
    assert info["image_size"] == list(drawn.shape[-2:]) == [8, 8] and not info["img2img"]


def test_the_api_is_described_by_openapi(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]
    assert {"sampler", "steps", "seed", "n", "label", "prompt", "negative_prompt", "init_image"} <= set(
        fields
    )
    assert (
        fields["steps"]["maximum"] == 200 and "409" in schema["paths"]["/api/generate"]["post"]["responses"]
    )
    assert "swagger" in client.get("/docs").text.lower()


def test_concurrent_page_requests_are_answered_while_a_generation_runs(live, gate):
    done = threading.Event()

    def run() -> None:
        httpx.post(live + "/api/generate", json={"sampler": "ddim", "steps": 3}, timeout=60)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert gate.reached.wait(30)
    assert httpx.get(live + "/api/info", timeout=10).status_code == 200  # the event loop is not blocked
    gate.open()
    assert done.wait(30)


def test_a_page_that_goes_away_cancels_its_generation(served, gate):
    url, generator = served
    with httpx.Client(base_url=url, timeout=60) as http:
        with http.stream("POST", "/api/generate", json={"sampler": "ddim", "steps": 50}) as response:
            next(response.iter_lines())
            assert gate.reached.wait(30)
        # the stream is closed while the run is held: the server cancels it
        deadline = time.monotonic() + 30
        while not generator.cancelled.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert generator.cancelled.is_set()
        gate.open()
        assert generator.busy.acquire(timeout=30)  # the worker stopped after that step and let go
        generator.busy.release()
        answer = http.post("/api/generate", json={"sampler": "ddim", "steps": 1})
        assert answer.status_code == 200 and events(answer.text.splitlines())[-1]["event"] == "done"


def test_a_text_model_takes_a_prompt_and_a_negative_prompt(tmp_path, tiny_condition_unet, tiny_clip):
    from slimdiff.diffusion import training_scheduler
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    folder = tmp_path / "texts"
    unet = tiny_condition_unet(classes=None, cross_attention_dim=32)
    SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler()).save_pretrained(folder)
    tiny_clip(folder)
    client = TestClient(make_app(load_generator(str(folder)), "127.0.0.1", 80), base_url="http://127.0.0.1")
    info = client.get("/api/info").json()
    assert info["text"] and info["guidance"] and info["classes"] is None
    ask = {"sampler": "ddim", "steps": 2, "prompt": "a cat", "guidance": 3.0}
    plain = next(e for e in generate(client, **ask)[1] if e["event"] == "result")
    assert plain["condition"] == "'a cat'"
    steered = next(e for e in generate(client, **ask, negative_prompt="a dog")[1] if e["event"] == "result")
    assert steered["images"] != plain["images"]  # guidance steers away from the negative prompt
