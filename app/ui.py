"""The Gradio UI: upload stacks, tune the parameters, segment, preview and download.

Every stack becomes a job of the shared :class:`~app.jobs.JobManager`, so the UI and the REST
API queue behind the same single worker. The handlers never take a server path from the
browser: uploads arrive as Gradio's own temporary files and are copied into job folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from app.api import DEFAULT_PATCH_TEXT, SEGMENTATION_DEFAULTS
from app.jobs import Job, JobManager, QueueFullError
from app.requests import build_request
from segmentation.errors import InputError
from segmentation.parameters import (
    DEFAULT_CUTOFF,
    DEFAULT_EDGE_WEIGHTS,
    DEFAULT_ENGINE,
    DEFAULT_FOOTPRINT,
    DEFAULT_FOREGROUND_SEED_DISTANCE,
    DEFAULT_FRAGMENT_RATIO,
    DEFAULT_MAX_SIZE,
    DEFAULT_METHOD,
    DEFAULT_MIN_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_RESAMPLE_Z,
    DEFAULT_RIM_DISTANCE,
    DEFAULT_TEST_TIME_FLIP,
    DEFAULT_THRESHOLD,
    EDGE_WEIGHTS,
    MAX_FOREGROUND_SEED_DISTANCE,
    MAX_RIM_DISTANCE,
    METHODS,
    installed_engines,
)

logger = logging.getLogger(__name__)

SUMMARY_HEADERS = ["file", "cells found", "time (s)", "device", "network reused"]
#: Output kinds offered for download, in order (the zip holds all outputs, GIF included).
DOWNLOAD_KINDS = ("labels", "boundaries", "cells", "zip")
_POLL_SECONDS = 0.25
#: Gradio shows an unset number box as 0, so 0 means "no limit" as well as empty.
NO_LIMIT = "Empty or 0: no limit"
NEEDS_VOXEL_SIZE = f"{NO_LIMIT}. Needs the voxel size in the file's metadata"

INTRODUCTION = """
# germseg · 3D cell segmentation of *C. elegans* germlines
Upload one or more two-channel TIFF stacks (channel 1: cytoplasm / germ-granule marker,
channel 2: plasma-membrane marker), press **Segment**, then tune the sliders and press
**Re-segment**: re-tuning reuses the network's boundary prediction and takes seconds.
"""

CSS = """
#germseg-preview img { object-fit: contain; }
footer { display: none !important; }
"""


def _wait_with_progress(manager: JobManager, jobs: Sequence[Job], progress: gr.Progress) -> None:
    """Block until all jobs finish, reporting their combined progress and queue position."""
    for index, job in enumerate(jobs):
        while not manager.wait(job, timeout=_POLL_SECONDS):
            position = manager.queue_position(job.id)
            if position is not None:
                description = f"{job.source_name}: waiting, position {position} in the queue"
            else:
                description = f"{job.source_name}: {job.stage}"
            progress((index + job.progress) / len(jobs), desc=description)
    progress(1.0, desc="done")


def _unique_names(jobs: Sequence[Job]) -> list[str]:
    names: list[str] = []
    for job in jobs:
        name, copy = job.source_name, 1
        while name in names:
            copy += 1
            name = f"{job.source_name} ({copy})"
        names.append(name)
    return names


def _results(jobs: Sequence[Job]) -> tuple:
    """UI outputs for finished jobs: preview, selector, downloads, summary and state."""
    finished = [job for job in jobs if job.status == "done"]
    for job in jobs:
        if job.status == "failed":
            gr.Warning(job.error or f"{job.source_name} failed")
        for warning in job.warnings if job.status == "done" else ():
            gr.Warning(warning)
    if not finished:
        raise gr.Error(jobs[0].error if len(jobs) == 1 else "all stacks failed; see the messages")
    names = _unique_names(finished)
    previews = {
        name: str(job.outputs.get("preview", "")) for name, job in zip(names, finished, strict=True)
    }
    downloads = [
        str(job.outputs[kind]) for job in finished for kind in DOWNLOAD_KINDS if kind in job.outputs
    ]
    summary = [
        [
            name,
            job.n_cells,
            round(job.timings.get("total", 0.0), 1),
            f"{job.device} ({job.engine}, {job.precision})" if job.precision else job.device,
            "yes" if job.network_reused else "no",
        ]
        for name, job in zip(names, finished, strict=True)
    ]
    first = names[0]
    selector = gr.Dropdown(choices=names, value=first, visible=len(names) > 1)
    return previews[first] or None, selector, downloads, summary, previews


def build_ui(
    manager: JobManager,
    devices: tuple[str, ...],
    example_path: Path | None = None,
    delete_cache: tuple[int, int] | None = None,
) -> gr.Blocks:
    """The Gradio Blocks of the app.

    Parameters
    ----------
    manager : JobManager
        Where stacks are queued.
    devices : tuple of str
        Devices offered for the network; the first is the default.
    example_path : Path, optional
        A small stack loaded by "Try an example"; the button is hidden without one.
    delete_cache : (int, int), optional
        Gradio's ``(frequency, age)`` in seconds for cleaning its upload/output cache.
    """

    def segment(
        files: list[str] | None,
        threshold: float,
        footprint: int,
        cutoff: float,
        method: str,
        patch: str,
        overlap: float,
        test_time_flip: bool,
        min_size: float,
        max_size: float | None = DEFAULT_MAX_SIZE,
        min_volume_um3: float | None = SEGMENTATION_DEFAULTS.min_volume_um3,
        max_volume_um3: float | None = SEGMENTATION_DEFAULTS.max_volume_um3,
        fragment_ratio: float = DEFAULT_FRAGMENT_RATIO,
        rim_distance: float = DEFAULT_RIM_DISTANCE,
        foreground_seed_distance: float = DEFAULT_FOREGROUND_SEED_DISTANCE,
        device: str = devices[0],
        voxel_size: str = "",
        resample_z: bool = DEFAULT_RESAMPLE_Z,
        engine: str = DEFAULT_ENGINE,
        edge_weights: str = DEFAULT_EDGE_WEIGHTS,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's injection idiom)
    ) -> tuple:
        if not files:
            raise gr.Error("Upload one or more .tif stacks first, or press 'Try an example'.")
        try:
            request = build_request(
                threshold=threshold,
                footprint=footprint,
                cutoff=cutoff,
                method=method,
                edge_weights=edge_weights,
                min_size=min_size or 0,
                max_size=max_size or None,
                min_volume_um3=min_volume_um3 or None,
                max_volume_um3=max_volume_um3 or None,
                fragment_ratio=fragment_ratio,
                rim_distance=rim_distance,
                foreground_seed_distance=foreground_seed_distance,
                patch=patch,
                overlap=overlap,
                test_time_flip=test_time_flip,
                resample_z=resample_z,
                device=device,
                devices=devices,
                engine=engine,
                voxel_size=voxel_size,
            )
            jobs = []
            for path in files:
                with open(path, "rb") as stream:
                    jobs.append(manager.submit(stream, Path(path).name, request))
        except (InputError, QueueFullError) as error:
            raise gr.Error(str(error)) from error
        _wait_with_progress(manager, jobs, progress)
        preview, selector, downloads, summary, previews = _results(jobs)
        inference = {
            "patch": patch,
            "overlap": overlap,
            "test_time_flip": test_time_flip,
            "device": device,
            "resample_z": resample_z,
            "engine": engine,
        }
        return preview, selector, downloads, summary, previews, inference

    def resegment(
        files: list[str] | None,
        threshold: float,
        footprint: int,
        cutoff: float,
        method: str,
        min_size: float,
        max_size: float | None = DEFAULT_MAX_SIZE,
        min_volume_um3: float | None = SEGMENTATION_DEFAULTS.min_volume_um3,
        max_volume_um3: float | None = SEGMENTATION_DEFAULTS.max_volume_um3,
        fragment_ratio: float = DEFAULT_FRAGMENT_RATIO,
        rim_distance: float = DEFAULT_RIM_DISTANCE,
        foreground_seed_distance: float = DEFAULT_FOREGROUND_SEED_DISTANCE,
        voxel_size: str = "",
        edge_weights: str = DEFAULT_EDGE_WEIGHTS,
        last_inference: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's injection idiom)
    ) -> tuple:
        if not last_inference:
            raise gr.Error("Press 'Segment' first; 'Re-segment' re-tunes the last result.")
        return segment(
            files,
            threshold,
            footprint,
            cutoff,
            method,
            last_inference["patch"],
            last_inference["overlap"],
            last_inference["test_time_flip"],
            min_size,
            max_size,
            min_volume_um3,
            max_volume_um3,
            fragment_ratio,
            rim_distance,
            foreground_seed_distance,
            last_inference["device"],
            voxel_size,
            last_inference.get("resample_z", DEFAULT_RESAMPLE_Z),
            last_inference.get("engine", DEFAULT_ENGINE),
            edge_weights,
            progress,
        )

    def load_example() -> list[str]:
        return [str(example_path)]

    def show_preview(name: str, previews: dict[str, str]) -> str | None:
        return previews.get(name) or None

    with gr.Blocks(title="germseg", delete_cache=delete_cache) as blocks:
        previews_state = gr.State({})
        inference_state = gr.State(None)
        gr.Markdown(INTRODUCTION)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                files = gr.File(
                    label="TIFF or ND2 stacks (C, Z, Y, X)",
                    file_count="multiple",
                    file_types=[".tif", ".tiff", ".nd2"],
                    height=160,
                )
                example_button = gr.Button(
                    "Try an example", size="sm", visible=example_path is not None
                )
                threshold = gr.Slider(
                    0.05,
                    0.95,
                    value=DEFAULT_THRESHOLD,
                    step=0.05,
                    label="Boundary threshold",
                    info="Boundary probability above which a voxel separates seeds",
                )
                footprint = gr.Slider(
                    1,
                    31,
                    value=DEFAULT_FOOTPRINT,
                    step=1,
                    label="Watershed footprint (pixels)",
                    info="Larger: fewer, bigger super-pixels",
                )
                cutoff = gr.Slider(
                    0.05,
                    0.95,
                    value=DEFAULT_CUTOFF,
                    step=0.05,
                    label="Partition cutoff",
                    info="Higher: more merging of super-pixels into cells",
                )
                method = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label="Partition method")
                edge_weights = gr.Radio(
                    list(EDGE_WEIGHTS),
                    value=DEFAULT_EDGE_WEIGHTS,
                    label="Edge weights",
                    info="learned: the model's merge classifier; boundary: mean on the face",
                )
                with gr.Accordion("Advanced", open=False):
                    patch = gr.Textbox(DEFAULT_PATCH_TEXT, label="Network window Z,Y,X")
                    overlap = gr.Slider(
                        0.0, 0.5, value=DEFAULT_OVERLAP, step=0.05, label="Window overlap"
                    )
                    test_time_flip = gr.Checkbox(
                        DEFAULT_TEST_TIME_FLIP,
                        label="Test-time flip",
                        info="Also run the network on the Z-flipped stack and average: about "
                        "twice as slow, usually more accurate",
                    )
                    resample_z = gr.Checkbox(
                        DEFAULT_RESAMPLE_Z,
                        label="Resample Z for the network",
                        info="A stack whose Z step lies outside what the model was trained "
                        "on (e.g. a nearly isotropic crop) is resampled along Z for the "
                        "network; results keep the stack's own planes",
                    )
                    engine = gr.Dropdown(
                        ["auto", *installed_engines()],
                        value=DEFAULT_ENGINE,
                        label="Engine",
                        info="What runs the network: auto is the fastest one installed "
                        "(OpenVINO on a CPU when installed, else PyTorch)",
                    )
                    with gr.Row():
                        min_size = gr.Number(
                            DEFAULT_MIN_SIZE,
                            label="Min cell size (voxels)",
                            precision=0,
                            minimum=0,
                        )
                        max_size = gr.Number(
                            DEFAULT_MAX_SIZE,
                            label="Max cell size (voxels)",
                            precision=0,
                            minimum=0,
                            info=NO_LIMIT,
                            placeholder="no limit",
                        )
                    with gr.Row():
                        min_volume = gr.Number(
                            SEGMENTATION_DEFAULTS.min_volume_um3,
                            label="Min cell volume (µm³)",
                            minimum=0,
                            info=NEEDS_VOXEL_SIZE,
                            placeholder="no limit",
                        )
                        max_volume = gr.Number(
                            SEGMENTATION_DEFAULTS.max_volume_um3,
                            label="Max cell volume (µm³)",
                            minimum=0,
                            info=NEEDS_VOXEL_SIZE,
                            placeholder="no limit",
                        )
                    fragment_ratio = gr.Slider(
                        0.0,
                        0.5,
                        value=DEFAULT_FRAGMENT_RATIO,
                        step=0.01,
                        label="Fragment ratio",
                        info="Merge segments up to this fraction of the size of the cell they "
                        "mostly touch (e.g. a nucleus cut out of an oocyte); 0: off",
                    )
                    rim_distance = gr.Slider(
                        0.0,
                        MAX_RIM_DISTANCE,
                        value=DEFAULT_RIM_DISTANCE,
                        step=0.5,
                        label="Rim distance (pixels)",
                        info="Cells take back foreground voxels left unlabelled up to this far "
                        "from them (rims at the tissue's edge); 0: off",
                    )
                    foreground_seed_distance = gr.Slider(
                        0.0,
                        MAX_FOREGROUND_SEED_DISTANCE,
                        value=DEFAULT_FOREGROUND_SEED_DISTANCE,
                        step=0.5,
                        label="Foreground seed distance (pixels)",
                        info="Cells with a faint outer border that the background swallowed "
                        "get seeds at least this deep inside them; 0: off",
                    )
                    voxel_size = gr.Textbox(
                        "",
                        label="Voxel size Z,Y,X (µm)",
                        placeholder="from the file",
                        info="Instead of the file's; a stack without one is taken to have a Z "
                        "step of 5 XY pixels",
                    )
                    device = gr.Radio(list(devices), value=devices[0], label="Device")
                with gr.Row():
                    segment_button = gr.Button("Segment", variant="primary")
                    resegment_button = gr.Button("Re-segment", interactive=False)
            with gr.Column(scale=3, min_width=400):
                gr.Markdown(
                    "**Preview**: membrane channel with cell outlines, plane by plane. "
                    "**Downloads** per stack: label image, boundary probabilities, "
                    "cell table (CSV) and a zip of everything."
                )
                selector = gr.Dropdown(label="Preview of", choices=[], visible=False)
                preview = gr.Image(
                    label="Preview",
                    type="filepath",
                    height=440,
                    interactive=False,
                    elem_id="germseg-preview",
                )
                downloads = gr.File(
                    label="Downloads",
                    file_count="multiple",
                    interactive=False,
                    height=330,
                    elem_id="germseg-downloads",
                )
                summary = gr.Dataframe(
                    headers=SUMMARY_HEADERS,
                    label="Summary",
                    interactive=False,
                    datatype=["str", "number", "number", "str", "str"],
                    elem_id="germseg-summary",
                )

        outputs = [preview, selector, downloads, summary, previews_state, inference_state]
        tuning = [threshold, footprint, cutoff, method]
        size_limits = [
            min_size,
            max_size,
            min_volume,
            max_volume,
            fragment_ratio,
            rim_distance,
            foreground_seed_distance,
        ]
        segment_inputs = [
            files,
            *tuning,
            patch,
            overlap,
            test_time_flip,
            *size_limits,
            device,
            voxel_size,
            resample_z,
            engine,
            edge_weights,
        ]
        enable_resegment = {
            "fn": lambda: gr.Button(interactive=True),
            "outputs": resegment_button,
            "api_visibility": "private",
        }
        segment_event = segment_button.click(
            segment,
            inputs=segment_inputs,
            outputs=outputs,
            api_name="segment",
            concurrency_id="segment",
        )
        segment_event.success(**enable_resegment)
        resegment_event = resegment_button.click(
            resegment,
            inputs=[files, *tuning, *size_limits, voxel_size, edge_weights, inference_state],
            outputs=outputs,
            api_name="resegment",
            concurrency_id="segment",
        )
        resegment_event.success(**enable_resegment)
        example_event = example_button.click(
            load_example, outputs=files, api_visibility="private"
        ).success(
            segment,
            inputs=segment_inputs,
            outputs=outputs,
            api_visibility="private",
            concurrency_id="segment",
        )
        example_event.success(**enable_resegment)
        selector.input(
            show_preview,
            inputs=[selector, previews_state],
            outputs=preview,
            api_visibility="private",
        )
    return blocks
