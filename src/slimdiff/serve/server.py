"""`slimdiff serve MODEL [--teacher T]`: a local page to generate images and compare student and teacher.

This module is the generator behind the page; `serve/http.py` is the HTTP side (Python's own server, bound
to 127.0.0.1 unless told otherwise, and what a request must look like). `GET /` is the page, `GET /api/info` what the model offers (solvers, classes, a teacher), `POST /api/generate` one request:
the student's images, the teacher's from the same noise, and the stitched ones (student for the first
fraction of the steps, teacher for the rest), each with the seconds it took. A bad parameter is answered
with status 400 and one line the page shows; anything else with 500 and a short line (the traceback goes
to the server's log, never to the page). Requests are served one at a time: generation uses the CPU fully.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import time

import torch
from PIL import Image

from slimdiff.errors import ModelError, SlimdiffError
from slimdiff.models.inputs import condition_input, sample_hw
from slimdiff.reporting.images import to_uint8
from slimdiff.sampling.conditions import prompt_embeddings, text_encoder_of
from slimdiff.sampling.generate import generate
from slimdiff.sampling.solvers import SAMPLERS

MAX_STEPS, MAX_IMAGES = 200, 8


class BadRequest(SlimdiffError):
    """A parameter the page sent that cannot be used; its message is shown on the page."""


def _number(params: dict, name: str, kind, low, high, default=None):
    value = params.get(name, default)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"{name} is missing")
        value = default
    # JSON true/false are ints to Python and 1e400 is inf: neither is a number a user typed
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = kind(value)
    except OverflowError:  # int(inf)
        raise BadRequest(f"{name} must be a finite number, got {value}") from None
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number, got {number}")
    if kind is int and isinstance(value, float) and number != value:
        raise BadRequest(f"{name} must be a whole number, got {value}")
    if not low <= number <= high:
        raise BadRequest(f"{name} must lie in [{low}, {high}], got {number}")
    return number


def png_data_url(image: torch.Tensor) -> str:
    """An image (3, H, W) in [-1, 1] as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image[None])[0]).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Generator:
    """The student pipeline, an optional teacher pipeline on the same latent space, and one lock."""

    def __init__(self, student, teacher=None, names: tuple[str, str] = ("student", "teacher"), encoder=None):
        self.student, self.teacher, self.names, self.encoder = student, teacher, names, encoder
        self.lock = threading.Lock()
        if teacher is not None:
            shapes = [(p.unet.config.in_channels, *sample_hw(p.unet.config)) for p in (student, teacher)]
            if shapes[0] != shapes[1]:
                raise ModelError(
                    f"the teacher samples {shapes[1]} latents, the model {shapes[0]}: they must match"
                )
        config = student.unet.config
        self.condition = condition_input(config)
        self.classes = config.get("num_context_classes") or config.get("num_class_embeds")

    def info(self) -> dict:
        return {
            "model": self.names[0],
            "teacher": self.names[1] if self.teacher is not None else None,
            "samplers": list(SAMPLERS),
            "single_step_samplers": [s.name for s in SAMPLERS.values() if not s.keeps_model_outputs],
            "classes": self.classes,
            "guidance": bool(self.student.unet.config.get("num_context_classes")) or self.encoder is not None,
            "text": self.condition == "encoder_hidden_states",
            "max_steps": MAX_STEPS,
            "max_images": MAX_IMAGES,
        }

    def parse(self, params: dict) -> dict:
        sampler = params.get("sampler", "dpm++")
        for name in ("sampler", "prompt", "negative"):
            if not isinstance(params.get(name, ""), str | None):
                raise BadRequest(f"{name} must be a string, got {type(params[name]).__name__}")
        if sampler not in SAMPLERS:
            raise BadRequest(f"unknown solver {sampler!r}; valid: {', '.join(SAMPLERS)}")
        call = {
            "sampler": sampler,
            "num_inference_steps": _number(params, "steps", int, 1, MAX_STEPS, 20),
            "seed": _number(params, "seed", int, 0, 2**31 - 1, 0),
            "n": _number(params, "n", int, 1, MAX_IMAGES, 1),
        }
        if self.condition == "encoder_hidden_states":
            if self.encoder is None:
                raise BadRequest(
                    "this text-conditional model carries no text encoder (tokenizer/, text_encoder/)"
                )
            prompt, negative = str(params.get("prompt") or ""), str(params.get("negative") or "")
            embeds, call["negative_prompt_embeds"] = prompt_embeddings(self.encoder, prompt, negative)
            call["per_image"] = {"prompt_embeds": embeds.expand(call["n"], -1, -1)}
            call["prompt"] = prompt
        if self.condition == "encoder_hidden_states" or self.classes:
            call["class_labels"] = _number(params, "label", int, 0, self.classes - 1, 0)
            guidance = params.get("guidance")
            if guidance not in (None, ""):
                if not self.info()["guidance"]:
                    raise BadRequest("this model has no 'no class' row, so it cannot use guidance")
                call["guidance_scale"] = _number(params, "guidance", float, 0.0, 50.0)
        fraction = params.get("stitch")
        if self.teacher is not None and fraction not in (None, ""):
            call["stitch"] = _number(params, "stitch", float, 0.0, 1.0)
            if 0 < call["stitch"] < 1 and SAMPLERS[sampler].keeps_model_outputs:
                single = ", ".join(self.info()["single_step_samplers"])
                raise BadRequest(
                    f"stitching needs a single-step solver ({single}); {sampler} keeps past outputs"
                )
        return call

    def run(self, params: dict) -> dict:
        call = self.parse(params)
        n, seed, fraction = call.pop("n"), call.pop("seed"), call.pop("stitch", None)
        prompt = call.pop("prompt", None)
        runs = [(self.names[0], self.student, {})]
        if self.teacher is not None:
            runs.append((self.names[1], self.teacher, {}))
            if fraction is not None and 0 < fraction < 1:
                runs.append(
                    (
                        f"stitched ({fraction:g} {self.names[0]})",
                        self.student,
                        {"stitch": (self.teacher.unet, fraction)},
                    )
                )
        results = []
        with self.lock:
            for name, pipe, extra in runs:
                start = time.perf_counter()
                try:
                    images = generate(pipe, n, seed, batch=n, **call, **extra)
                except ValueError as error:  # a setting the pipeline refuses
                    raise BadRequest(str(error).splitlines()[0]) from None
                seconds = time.perf_counter() - start
                results.append(
                    {"name": name, "seconds": round(seconds, 3), "images": [png_data_url(x) for x in images]}
                )
        shown = {k: v for k, v in call.items() if k not in ("stitch", "per_image", "negative_prompt_embeds")}
        return {"results": results, "seed": seed, "prompt": prompt, **shown}


def load_generator(model: str, teacher: str | None = None, decoder: str = "full") -> Generator:
    """The student pipeline of `model` (with `decoder`) and the teacher pipeline of `teacher`."""
    from slimdiff.deploy.decoders import use_decoder
    from slimdiff.sampling.pipeline import load_pipeline

    def load(source: str):
        pipe = load_pipeline(source)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    student = use_decoder(load(model), model, decoder)
    encoder = None
    if condition_input(student.unet.config) == "encoder_hidden_states":
        encoder = text_encoder_of(model)
    names = (model, teacher or "teacher")
    return Generator(student, load(teacher) if teacher else None, names, encoder)
