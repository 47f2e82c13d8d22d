"""Animated GIF preview: a z-sweep of the membrane channel with coloured cells, next to the
boundary-probability map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

#: Opacity of the label colours over the membrane channel.
LABEL_ALPHA = 0.4
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949


def label_colours(label_ids: np.ndarray) -> np.ndarray:
    """Deterministic, well-spread RGB colour (float 0-1, shape (..., 3)) for each label id.

    Hues step by the golden ratio so that consecutive ids get distinct colours.
    """
    hue = (np.asarray(label_ids, dtype=np.float64) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation, value = 0.75, 1.0
    sector = np.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * fraction)
    t = value * (1.0 - saturation * (1.0 - fraction))
    sector = sector.astype(np.int64) % 6
    choices = [
        (value, t, p),
        (q, value, p),
        (p, value, t),
        (p, q, value),
        (t, p, value),
        (value, p, q),
    ]
    channels = [
        np.choose(sector, [np.broadcast_to(choice[i], hue.shape) for choice in choices])
        for i in range(3)
    ]
    return np.stack(channels, axis=-1)


def _stretch(volume: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Volume scaled to 0-1 between its percentiles (estimated on a YX-strided subsample)."""
    step = max(1, int(np.sqrt(volume.size / (1 << 20))))
    p_low, p_high = np.percentile(volume[:, ::step, ::step], [low, high])
    scale = p_high - p_low if p_high > p_low else 1.0
    return (volume - p_low) / scale


def _sample_indices(length: int, size: int) -> np.ndarray:
    return np.minimum((np.arange(size) + 0.5) * length / size, length - 1).astype(np.intp)


def render_preview_frames(
    membrane: np.ndarray,
    labels: np.ndarray,
    boundary_probability: np.ndarray,
    *,
    width: int = 800,
) -> list[Image.Image]:
    """One RGB frame per z-plane: labelled membrane channel beside the boundary map.

    Parameters
    ----------
    membrane : np.ndarray
        (Z, Y, X) membrane-channel intensities (any scale; contrast-stretched by the
        1st and 99.8th percentiles of the whole stack).
    labels : np.ndarray
        (Z, Y, X) labels, 0 = background (transparent); each cell is filled with its
        colour at ``LABEL_ALPHA`` and outlined in it.
    boundary_probability : np.ndarray
        (Z, Y, X) values in [0, 1], shown in grey.
    width : int
        Width of a frame in pixels (two panels side by side).

    Returns
    -------
    list of PIL.Image.Image
        Z RGB frames, each ``width`` wide, labelled ``z = k``.
    """
    membrane = np.asarray(membrane)
    if membrane.ndim != 3 or labels.shape != membrane.shape:
        raise ValueError(
            f"membrane and labels must be (Z, Y, X) of one shape, got {membrane.shape} and "
            f"{labels.shape}"
        )
    if boundary_probability.shape != membrane.shape:
        raise ValueError(
            f"boundary_probability shape {boundary_probability.shape} does not match "
            f"{membrane.shape}"
        )
    n_z, n_y, n_x = membrane.shape
    panel_width = max(1, width // 2)
    panel_height = max(1, round(n_y * panel_width / n_x))
    rows = _sample_indices(n_y, panel_height)
    columns = _sample_indices(n_x, panel_width)
    grid = np.ix_(rows, columns)
    stretched = np.clip(_stretch(membrane[:, rows][:, :, columns]), 0.0, 1.0)
    frames = []
    for z in range(n_z):
        grey = stretched[z][..., None].repeat(3, axis=-1)
        plane_labels = labels[z][grid]
        colours = label_colours(plane_labels)
        inside = (plane_labels > 0)[..., None]
        blended = np.where(inside, (1 - LABEL_ALPHA) * grey + LABEL_ALPHA * colours, grey)
        contours = find_boundaries(plane_labels, mode="inner")
        blended[contours] = colours[contours]
        boundary = np.clip(boundary_probability[z][grid], 0.0, 1.0)
        right = boundary[..., None].repeat(3, axis=-1)
        frame = np.concatenate([blended, right], axis=1)
        image = Image.fromarray(np.round(frame * 255).astype(np.uint8), mode="RGB")
        ImageDraw.Draw(image).text((6, 4), f"z = {z}", fill=(255, 255, 0))
        frames.append(image)
    return frames


def write_preview_gif(
    path: str | Path,
    membrane: np.ndarray,
    labels: np.ndarray,
    boundary_probability: np.ndarray,
    *,
    width: int = 800,
    frame_ms: int = 100,
) -> Path:
    """Write the z-sweep preview as an animated, endlessly looping GIF.

    All frames share one palette (fast octree quantisation of a mosaic of the frames), so
    colours do not flicker between frames.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    frames = render_preview_frames(membrane, labels, boundary_probability, width=width)
    step = max(1, len(frames) // 8)
    mosaic_source = frames[::step]
    mosaic = Image.new("RGB", (frames[0].width, frames[0].height * len(mosaic_source)))
    for index, frame in enumerate(mosaic_source):
        mosaic.paste(frame, (0, index * frame.height))
    palette = mosaic.quantize(colors=255, method=Image.Quantize.FASTOCTREE)
    quantized = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    quantized[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=quantized[1:],
        duration=frame_ms,
        loop=0,
        optimize=False,
    )
    return path
