"""Turn the parameters typed into a form (REST or UI) into a checked :class:`JobRequest`."""

from __future__ import annotations

from app.jobs import JobRequest
from segmentation.errors import InputError
from segmentation.io import parse_channels
from segmentation.parameters import (
    DEFAULT_EDGE_WEIGHTS,
    DEFAULT_ENGINE,
    DEFAULT_FOREGROUND_SEED_DISTANCE,
    DEFAULT_FRAGMENT_RATIO,
    DEFAULT_RESAMPLE_Z,
    DEFAULT_RIM_DISTANCE,
    DEFAULT_TEST_TIME_FLIP,
    InferenceParameters,
    SegmentationParameters,
    parse_patch,
    parse_voxel_size,
)


def build_request(
    *,
    threshold: float,
    footprint: int,
    cutoff: float,
    method: str,
    edge_weights: str = DEFAULT_EDGE_WEIGHTS,
    min_size: int,
    max_size: int | None,
    min_volume_um3: float | None,
    max_volume_um3: float | None,
    patch: str | tuple[int, int, int],
    fragment_ratio: float = DEFAULT_FRAGMENT_RATIO,
    rim_distance: float = DEFAULT_RIM_DISTANCE,
    foreground_seed_distance: float = DEFAULT_FOREGROUND_SEED_DISTANCE,
    overlap: float,
    test_time_flip: bool = DEFAULT_TEST_TIME_FLIP,
    resample_z: bool = DEFAULT_RESAMPLE_Z,
    device: str,
    devices: tuple[str, ...],
    engine: str = DEFAULT_ENGINE,
    channels: str | None = None,
    voxel_size: str | None = None,
    gif: bool = JobRequest.gif,
) -> JobRequest:
    """A checked job request; every problem is an :class:`InputError` with a one-line message.

    The values are checked by :class:`~segmentation.parameters.SegmentationParameters` and
    :class:`~segmentation.parameters.InferenceParameters`, with the limits and messages of
    the CLI and the library; only the device is checked against this server's.

    Parameters
    ----------
    device : str
        Device to run the network on; must be one of ``devices``.
    devices : tuple of str
        Devices this server has.
    engine : {"auto", "torch", "openvino", "onnxruntime"}
        What runs the network; checked (and whether it is installed) by the parameters.
    channels : str, optional
        Two source channel indices ``"I,J"``; empty or None for the file's own two channels.
    voxel_size : str, optional
        ``"Z,Y,X"`` in µm, used instead of the file's metadata; empty or None for the file's.
    max_size : int or None
        Largest cell in voxels; None or 0 for no limit.
    min_volume_um3, max_volume_um3 : float or None
        Cell volume limits in µm³; None for no limit. They need a stack whose file records
        its voxel size, which :meth:`~app.jobs.JobManager.submit` checks.
    """
    if device not in devices:
        raise InputError(f"device {device!r} is not available here: use {' or '.join(devices)}")
    segmentation = SegmentationParameters(
        threshold=threshold,
        footprint=footprint,
        cutoff=cutoff,
        method=method,
        edge_weights=edge_weights,
        min_size=min_size,
        max_size=max_size or None,
        min_volume_um3=min_volume_um3,
        max_volume_um3=max_volume_um3,
        fragment_ratio=fragment_ratio,
        rim_distance=rim_distance,
        foreground_seed_distance=foreground_seed_distance,
    )
    inference = InferenceParameters(
        patch=parse_patch(patch) if isinstance(patch, str) else patch,
        overlap=overlap,
        device=device,
        engine=engine,
        test_time_flip=test_time_flip,
        resample_z=resample_z,
    )
    return JobRequest(
        segmentation=segmentation,
        inference=inference,
        channels=parse_channels(channels) if channels and str(channels).strip() else None,
        voxel_size=parse_voxel_size(voxel_size) if voxel_size and str(voxel_size).strip() else None,
        gif=bool(gif),
    )
