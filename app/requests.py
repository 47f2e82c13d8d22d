"""Turn the parameters typed into a form (REST or UI) into a checked :class:`JobRequest`."""

from __future__ import annotations

from typing import get_args

from app.jobs import JobRequest
from segmentation.errors import InputError
from segmentation.io import parse_channels, parse_voxel_size
from segmentation.parameters import (
    DEFAULT_FOREGROUND_SEED_DISTANCE,
    DEFAULT_FRAGMENT_RATIO,
    DEFAULT_RIM_DISTANCE,
    DEFAULT_TEST_TIME_FLIP,
    InferenceParameters,
    PartitionMethod,
    SegmentationParameters,
)

METHODS: tuple[str, ...] = get_args(PartitionMethod)
#: Largest rim distance a form accepts, in pixels (the UI slider's range).
MAX_RIM_DISTANCE = 20.0
#: Largest foreground seed distance a form accepts, in pixels (the UI slider's range).
MAX_FOREGROUND_SEED_DISTANCE = 30.0


def parse_patch(text: str) -> tuple[int, int, int]:
    """Parse a window size such as ``"32,256,256"`` (Z,Y,X) into three positive integers.

    Raises
    ------
    InputError
        If the text is not three positive integers separated by commas.
    """
    parts = [part.strip() for part in str(text).replace("x", ",").split(",")]
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise InputError(
            f"invalid patch {text!r}: give three positive integers Z,Y,X, e.g. 32,256,256"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def _check_volumes(min_volume_um3: float | None, max_volume_um3: float | None) -> None:
    for name, volume in (("min_volume_um3", min_volume_um3), ("max_volume_um3", max_volume_um3)):
        if volume is not None and not volume > 0:
            raise InputError(
                f"{name} must be a positive volume in µm³ (leave it empty for no limit), "
                f"got {volume:g}"
            )
    if min_volume_um3 is not None and max_volume_um3 is not None:
        if max_volume_um3 <= min_volume_um3:
            raise InputError(
                f"max_volume_um3 ({max_volume_um3:g}) must be larger than "
                f"min_volume_um3 ({min_volume_um3:g})"
            )


def build_request(
    *,
    threshold: float,
    footprint: int,
    cutoff: float,
    method: str,
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
    device: str,
    devices: tuple[str, ...],
    channels: str | None = None,
    voxel_size: str | None = None,
    gif: bool = JobRequest.gif,
) -> JobRequest:
    """A checked job request; every problem is an :class:`InputError` with a one-line message.

    Parameters
    ----------
    device : str
        Device to run the network on; must be one of ``devices``.
    devices : tuple of str
        Devices this server has.
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
    _check_range("threshold", threshold, 0.0, 1.0)
    _check_range("cutoff", cutoff, 0.0, 1.0)
    _check_range("overlap", overlap, 0.0, 0.9)
    _check_range("fragment_ratio", fragment_ratio, 0.0, 1.0)
    _check_range("rim_distance", rim_distance, 0.0, MAX_RIM_DISTANCE)
    _check_range(
        "foreground_seed_distance", foreground_seed_distance, 0.0, MAX_FOREGROUND_SEED_DISTANCE
    )
    if int(footprint) != footprint or footprint < 1:
        raise InputError(f"footprint must be a positive whole number of pixels, got {footprint}")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: use {' or '.join(METHODS)}")
    if int(min_size) != min_size or min_size < 0:
        raise InputError(f"min_size must be a whole number >= 0, got {min_size}")
    max_size = int(max_size) if max_size else None
    if max_size is not None and max_size <= min_size:
        raise InputError(f"max_size ({max_size}) must be larger than min_size ({min_size})")
    _check_volumes(min_volume_um3, max_volume_um3)
    if device not in devices:
        raise InputError(f"device {device!r} is not available here: use {' or '.join(devices)}")
    patch_size = parse_patch(patch) if isinstance(patch, str) else tuple(int(p) for p in patch)
    channel_pair = parse_channels(channels) if channels and str(channels).strip() else None
    given_voxel_size = (
        parse_voxel_size(voxel_size) if voxel_size and str(voxel_size).strip() else None
    )
    return JobRequest(
        segmentation=SegmentationParameters(
            threshold=float(threshold),
            footprint=int(footprint),
            cutoff=float(cutoff),
            method=method,
            min_size=int(min_size),
            max_size=max_size,
            min_volume_um3=None if min_volume_um3 is None else float(min_volume_um3),
            max_volume_um3=None if max_volume_um3 is None else float(max_volume_um3),
            fragment_ratio=float(fragment_ratio),
            rim_distance=float(rim_distance),
            foreground_seed_distance=float(foreground_seed_distance),
        ),
        inference=InferenceParameters(
            patch=patch_size,
            overlap=float(overlap),
            device=device,
            test_time_flip=bool(test_time_flip),
        ),
        channels=channel_pair,
        voxel_size=given_voxel_size,
        gif=bool(gif),
    )
