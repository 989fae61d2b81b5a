"""The generator behind `slimdiff serve`: a student pipeline, an optional teacher on the same latent space,
and one request at a time.

A request (`serve/requests.GenerateRequest`) becomes up to three runs from the same noise: the student, the
teacher, and the stitched trajectory (student for the first fraction of the steps, teacher for the rest).
`run` reports as it goes — `progress` after every solver step (the pipeline's `callback_on_step_end`),
`result` when a run's images are decoded (with its seconds), `done` with the teacher / student speed-up — and
stops between two steps once `cancel()` is called. What the page shows about the models (parameters, MACs per
step, class names, image size) is measured once, at load (`info`).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from slimdiff.errors import ModelError
from slimdiff.models.inputs import condition_input, example_inputs, sample_hw
from slimdiff.models.size import count_params
from slimdiff.reporting.images import to_uint8
from slimdiff.sampling.call_inputs import prompt_inputs
from slimdiff.sampling.conditions import class_names
from slimdiff.sampling.generate import generate
from slimdiff.sampling.init_image import can_encode, drawn_size, resolve_strength
from slimdiff.sampling.solvers import SAMPLERS
from slimdiff.serve.requests import (
    MAX_IMAGES,
    MAX_STEPS,
    MAX_UPLOAD_BYTES,
    BadRequest,
    GenerateRequest,
    decode_upload,
)

Event = dict  # {"event": kind, ...}: what `run` reports, sent to the page as one server-sent event


class Cancelled(Exception):
    """The user stopped a generation; raised between two solver steps."""


def png_data_url(image: torch.Tensor) -> str:
    """An image (3, H, W) in [-1, 1] as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image[None])[0]).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def describe(pipe, name: str) -> dict:
    """What a model costs: its UNet's parameters and the MACs of one step at batch 1."""
    from slimdiff.metrics.complexity import count_macs

    unet = pipe.unet
    return {
        "name": name,
        "params": count_params(unet),
        "macs": count_macs(unet, example_inputs(unet.config)),
    }


@dataclass
class Job:
    """A checked request: the pipeline arguments shared by every run, and the runs."""

    request: GenerateRequest
    call: dict
    runs: list[tuple[str, object, dict]] = field(default_factory=list)  # (role, pipeline, extra arguments)
    condition: str | None = None  # what the images were asked for: a class name or number, a prompt


class Generator:
    """The student pipeline, an optional teacher pipeline on the same latent space, and one request at a time
    (`busy`); `cancel()` stops the running one between two steps."""

    def __init__(self, student, teacher=None, names=("student", "teacher"), labels=None):
        self.student, self.teacher = student, teacher
        # a text model's prompts are read by the student pipeline's own tokenizer and text encoder
        self.reads_text = student.tokenizer is not None and student.text_encoder is not None
        self.busy, self.cancelled = threading.Lock(), threading.Event()
        if teacher is not None:
            shapes = [(p.unet.config.in_channels, *sample_hw(p.unet.config)) for p in (student, teacher)]
            if shapes[0] != shapes[1]:
                raise ModelError(
                    f"the teacher samples {shapes[1]} latents, the model {shapes[0]}: they must match"
                )
        config = student.unet.config
        self.condition = condition_input(config)
        self.classes = config.get("num_context_classes") or config.get("num_class_embeds")
        self.labels = labels if labels and len(labels) == self.classes else None
        self.models = {"student": describe(student, names[0])}
        if teacher is not None:
            self.models["teacher"] = describe(teacher, names[1])
        self.img2img = can_encode(student.vae)  # image-to-image encodes the upload
        self.size = drawn_size(student.vae, config)  # (height, width) of the images it draws

    def info(self) -> dict:
        return {
            "models": self.models,
            "samplers": list(SAMPLERS),
            "single_step_samplers": [s.name for s in SAMPLERS.values() if not s.keeps_model_outputs],
            "defaults": GenerateRequest().model_dump(include={"sampler", "steps", "seed", "n"}),
            "classes": self.classes,
            "class_names": self.labels,
            "guidance": bool(self.student.unet.config.get("num_context_classes")) or self.reads_text,
            "text": self.condition == "encoder_hidden_states",
            "img2img": self.img2img,
            "image_size": list(self.size),
            "max_steps": MAX_STEPS,
            "max_images": MAX_IMAGES,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
        }

    def prepare(self, request: GenerateRequest) -> Job:
        """The runs of `request`, every setting checked against the models (BadRequest with one line)."""
        call = {"sampler": request.sampler, "num_inference_steps": request.steps}
        condition = None
        if self.condition == "encoder_hidden_states":
            if not self.reads_text:
                raise BadRequest(
                    "this text-conditional model carries no text encoder (tokenizer/, text_encoder/)"
                )
            embeds, call["negative_prompt_embeds"] = prompt_inputs(
                self.student, 1, request.prompt, request.negative_prompt, None, None, guided=True
            )
            call["per_image"] = {"prompt_embeds": embeds.expand(request.n, -1, -1)}
            condition = repr(request.prompt)
        if self.classes:
            label = request.label or 0
            if label >= self.classes:
                raise BadRequest(f"label must lie in [0, {self.classes - 1}], got {label}")
            call["class_labels"] = label
            condition = self.labels[label] if self.labels else f"class {label}"
        elif request.label is not None:
            raise BadRequest("this model is not class-conditional: send no label")
        if request.guidance is not None:
            if not self.info()["guidance"]:
                raise BadRequest("this model has no 'no class' row, so it cannot use guidance")
            call["guidance_scale"] = request.guidance
        if request.init_image is not None:
            if not self.img2img:
                raise BadRequest("this model decodes with a slim decoder, which cannot encode an init image")
            call["image"] = decode_upload(request.init_image, self.size)
            call["strength"] = resolve_strength(call["image"], None, request.strength)  # diffusers' default
        elif request.strength is not None:
            raise BadRequest("strength needs an init_image")
        job = Job(request, call, [("student", self.student, {})], condition)
        if self.teacher is not None:
            job.runs.append(("teacher", self.teacher, {}))
            fraction = request.stitch
            if fraction is not None and 0 < fraction < 1:
                if SAMPLERS[request.sampler].keeps_model_outputs:
                    single = ", ".join(self.info()["single_step_samplers"])
                    raise BadRequest(
                        f"stitching needs a single-step solver ({single}); {request.sampler} keeps past outputs"
                    )
                job.runs.append(("stitched", self.student, {"stitch": (self.teacher.unet, fraction)}))
        return job

    def cancel(self) -> bool:
        """Stop the running generation after its current step; False when none runs."""
        if not self.busy.locked():
            return False
        self.cancelled.set()
        return True

    def run(self, job: Job, emit: Callable[[Event], None]) -> None:
        """Run `job`'s runs in order, reporting each step and result to `emit`; raises `Cancelled` after the
        step during which `cancel()` was called. The caller holds `busy`."""
        request, seconds = job.request, {}
        roles = [role for role, _, _ in job.runs]
        emit({"event": "start", "runs": roles, "steps": request.steps})

        def on_step(index: int, role: str):
            def callback(pipe, step: int, timestep, tensors: dict) -> dict:
                emit(
                    {
                        "event": "progress",
                        "run": index,
                        "role": role,
                        "step": step + 1,
                        "of": pipe.num_timesteps,
                    }
                )
                if self.cancelled.is_set():
                    pipe._interrupt = True  # diffusers' way to stop a pipeline's loop after this step
                return {}

            return callback

        for index, (role, pipe, extra) in enumerate(job.runs):
            start = time.perf_counter()
            try:
                images = generate(
                    pipe,
                    request.n,
                    request.seed,
                    batch=request.n,
                    callback_on_step_end=on_step(index, role),
                    **job.call,
                    **extra,
                )
            except ValueError as error:  # a setting the pipeline refuses
                raise BadRequest(str(error).splitlines()[0]) from None
            if self.cancelled.is_set():
                raise Cancelled(f"stopped during the {role}'s steps")
            seconds[role] = time.perf_counter() - start
            model = self.models["student" if role == "stitched" else role]["name"]
            emit(
                {
                    "event": "result",
                    "run": index,
                    "role": role,
                    "model": model,
                    "sampler": request.sampler,
                    "steps": request.steps,
                    "seed": request.seed,
                    "condition": job.condition,
                    "stitch": request.stitch if role == "stitched" else None,
                    "strength": job.call.get("strength"),
                    "seconds": round(seconds[role], 3),
                    "seconds_per_image": round(seconds[role] / request.n, 3),
                    "images": [png_data_url(x) for x in images],
                }
            )
        speedup = seconds["teacher"] / seconds["student"] if "teacher" in seconds else None
        emit({"event": "done", "speedup": None if speedup is None else round(speedup, 2)})


def load_generator(model: str, teacher: str | None = None, decoder: str = "full") -> Generator:
    """The student pipeline of `model` (with `decoder`) and the teacher pipeline of `teacher`, each run once
    for one step so that the first request's seconds are not the warm-up's."""
    from slimdiff.deploy.decoders import use_decoder
    from slimdiff.sampling.pipeline import load_pipeline

    def load(source: str):
        pipe = load_pipeline(source)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    student = use_decoder(load(model), model, decoder)
    names = (Path(model).name or model, Path(teacher).name if teacher else "teacher")
    generator = Generator(student, load(teacher) if teacher else None, names, class_names(model))
    warm_up = generator.prepare(GenerateRequest(steps=1, sampler="ddim"))
    for _, pipe, extra in warm_up.runs:
        generate(pipe, 1, 0, batch=1, **warm_up.call, **extra)
    return generator
