"""Training data: where the stacks come from, how they are split, and how patches are drawn.

Sources (:func:`read_training_sources`)
---------------------------------------
- A CSV file with a header and columns ``image`` (or ``images``), ``mask`` (or ``masks``,
  ``labels``, ``label``) and optionally ``split`` (``train``, ``val``/``validation``,
  ``test``) or the reference's ``train`` column (``TRUE`` = training pool, ``FALSE`` = test).
  Paths are relative to the CSV's folder. A file without a recognised header is read by
  position (image, mask, split), as the reference did.
- A folder, either with ``images/`` and ``labels/`` (or ``masks/``) subfolders whose files
  share a name (``images/a.tif`` + ``labels/a.tif``; ``labels/a_labels.tif`` also matches),
  or flat, with ``a.tif`` next to ``a_labels.tif`` (or ``_label``, ``_masks``, ``_mask``).
  Folder pairs have no explicit split.

Test rows are never used for training or validation (the reference patched them too).

Splits (:func:`split_by_stack`) are made per stack, never per patch, so that no validation
patch comes from a stack seen in training. With a single stack, use
:func:`split_stack_spatially` to hold out a block of it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segmentation.errors import InputError
from segmentation.inference.sliding_window import crop_window
from segmentation.training.augmentation import AugmentationConfig, augment
from segmentation.training.targets import edge_weights, make_targets
from segmentation.training.weight_maps import cached_weight_map, unet_weight_map

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff")
LABEL_MARKERS = ("_labels", "_label", "_masks", "_mask")
_IMAGE_COLUMNS = ("image", "images")
_LABEL_COLUMNS = ("mask", "masks", "labels", "label")
_SPLIT_COLUMNS = ("split", "train")
_SPLIT_VALUES = {
    "": None,
    "true": None,
    "false": "test",
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}

Window = tuple[slice, slice, slice]


@dataclass(frozen=True)
class TrainingPair:
    """One training stack: image file, label file, and its split.

    ``split`` is ``"train"``, ``"val"``, ``"test"``, or ``None`` when the source does not
    say (then :func:`split_by_stack` decides between training and validation).
    """

    image_path: Path
    labels_path: Path
    split: str | None = None


def _parse_split(value: str, where: str) -> str | None:
    key = value.strip().lower()
    if key not in _SPLIT_VALUES:
        raise InputError(f"{where}: unknown split {value!r}; use train, val, test (or TRUE/FALSE)")
    return _SPLIT_VALUES[key]


def _read_csv(path: Path) -> list[TrainingPair]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(
            f"{path} is empty; add a header 'image,mask[,split]' and one row per stack"
        )
    header = [cell.strip().lower() for cell in rows[0]]
    image_col = next((header.index(n) for n in _IMAGE_COLUMNS if n in header), None)
    label_col = next((header.index(n) for n in _LABEL_COLUMNS if n in header), None)
    if image_col is not None and label_col is not None:
        split_col = next((header.index(n) for n in _SPLIT_COLUMNS if n in header), None)
        body, first_line = rows[1:], 2
    else:
        if not any(Path(cell.strip()).suffix.lower() in IMAGE_SUFFIXES for cell in rows[0][:2]):
            # neither a recognised header nor a row of TIFF paths: a header with other names
            raise InputError(
                f"{path}: header {','.join(cell.strip() for cell in rows[0])!r} not "
                "recognised; name the columns image,mask[,split] (or list TIFF paths "
                "without a header)"
            )
        image_col, label_col = 0, 1
        split_col = 2 if len(rows[0]) > 2 else None
        body, first_line = rows, 1
    pairs = []
    for number, row in enumerate(body, start=first_line):
        where = f"{path}, line {number}"
        if len(row) <= max(image_col, label_col):
            raise InputError(f"{where}: expected an image and a mask path")
        split = None
        if split_col is not None and split_col < len(row):
            split = _parse_split(row[split_col], where)
        pairs.append(
            TrainingPair(
                (path.parent / row[image_col].strip()).resolve(),
                (path.parent / row[label_col].strip()).resolve(),
                split,
            )
        )
    if not pairs:
        raise InputError(f"{path} lists no stacks; add one row per image/mask pair")
    return pairs


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _label_stem(stem: str) -> str | None:
    """The image stem a label file belongs to (``a_labels`` -> ``a``), or None."""
    for marker in LABEL_MARKERS:
        if stem.lower().endswith(marker):
            return stem[: -len(marker)]
    return None


def _read_folder(folder: Path) -> list[TrainingPair]:
    image_dir = folder / "images"
    label_dir = next((folder / n for n in ("labels", "masks") if (folder / n).is_dir()), None)
    pairs = []
    if image_dir.is_dir() and label_dir is not None:
        labels = {}
        for path in sorted(filter(_is_image_file, label_dir.iterdir())):
            labels.setdefault(path.stem, path)
            stem = _label_stem(path.stem)
            if stem is not None:
                labels.setdefault(stem, path)
        for image in sorted(filter(_is_image_file, image_dir.iterdir())):
            if image.stem in labels:
                pairs.append(TrainingPair(image, labels[image.stem]))
            else:
                logger.warning("no label file for %s in %s; skipped", image.name, label_dir)
    else:
        files = sorted(filter(_is_image_file, folder.iterdir()))
        labels = {
            _label_stem(path.stem): path for path in files if _label_stem(path.stem) is not None
        }
        for image in files:
            if _label_stem(image.stem) is not None:
                continue
            if image.stem in labels:
                pairs.append(TrainingPair(image, labels[image.stem]))
            else:
                logger.warning("no label file for %s (expected %s_labels.tif)", image, image.stem)
    if not pairs:
        raise InputError(
            f"no image/label pairs in {folder}: put a.tif next to a_labels.tif, "
            "or use images/ and labels/ subfolders with matching names"
        )
    return pairs


def read_training_sources(data: str | Path) -> list[TrainingPair]:
    """Training stacks listed by a CSV file or found in a folder (see the module docstring).

    Raises
    ------
    InputError
        When the source does not exist, lists nothing, or names missing files.
    """
    path = Path(data)
    if path.is_dir():
        pairs = _read_folder(path)
    elif path.is_file():
        pairs = _read_csv(path)
    else:
        raise InputError(f"training data {path} does not exist; give a CSV file or a folder")
    missing = [p for pair in pairs for p in (pair.image_path, pair.labels_path) if not p.is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} training file(s) not found, first: {missing[0]}; "
            "paths in a CSV are relative to the CSV's folder"
        )
    return pairs


def split_by_stack(
    pairs: Sequence[TrainingPair], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Split stacks into training and validation stacks; test stacks are dropped.

    An explicit split wins: ``"train"`` stacks train, ``"val"`` stacks validate, and when
    any stack is marked ``"val"`` all unmarked stacks train. Otherwise a seeded random
    ``val_fraction`` of the unmarked stacks (at least one, while at least one stack remains
    for training) validates. With a single usable stack there is nothing to validate on: a
    warning is logged and the validation list is empty; hold out part of that stack with
    :func:`split_stack_spatially`.

    Returns
    -------
    train, val : lists of TrainingPair
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    usable = [pair for pair in pairs if pair.split != "test"]
    if not usable:
        raise InputError("every stack is marked as test; mark at least one for training")
    train = [pair for pair in usable if pair.split == "train"]
    val = [pair for pair in usable if pair.split == "val"]
    pool = [pair for pair in usable if pair.split is None]
    if val:
        return train + pool, val
    if val_fraction == 0.0 or not pool:
        return train + pool, []
    n_val = max(1, round(val_fraction * len(pool)))
    if not train:
        n_val = min(n_val, len(pool) - 1)
    if n_val == 0:
        logger.warning(
            "only one training stack: no stack left for validation; "
            "hold out a block of it with split_stack_spatially"
        )
        return pool, []
    order = np.random.default_rng(seed).permutation(len(pool))
    held_out = set(order[:n_val].tolist())
    return (
        train + [pair for i, pair in enumerate(pool) if i not in held_out],
        [pair for i, pair in enumerate(pool) if i in held_out],
    )


def split_stack_spatially(
    image: np.ndarray, labels: np.ndarray, val_fraction: float = 0.2
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out the last ``val_fraction`` of a single stack along X for validation.

    Parameters
    ----------
    image : (C, Z, Y, X) array
    labels : (Z, Y, X) array

    Returns
    -------
    (train_image, train_labels), (val_image, val_labels) : views of the inputs
    """
    if image.shape[1:] != labels.shape:
        raise InputError(f"image {image.shape} and labels {labels.shape} do not match")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(labels.shape[-1] * (1.0 - val_fraction)))
    if not 0 < cut < labels.shape[-1]:
        raise InputError(f"stack of width {labels.shape[-1]} is too narrow to split")
    return (image[..., :cut], labels[..., :cut]), (image[..., cut:], labels[..., cut:])


def _axis_starts(size: int, patch: int) -> list[int]:
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, patch))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def real_fraction(shape: Sequence[int], patch: Sequence[int]) -> float:
    """Fraction of a patch that is real data when the stack is smaller than the patch."""
    return float(np.prod([min(n, p) / p for n, p in zip(shape, patch, strict=True)]))


def patch_grid(
    shape: Sequence[int], patch: Sequence[int], *, min_real_fraction: float = 0.6
) -> list[Window]:
    """Windows of size ``patch`` that cover a (Z, Y, X) volume of ``shape``.

    Windows do not overlap, except the last along each axis, which is moved back to end at
    the volume's edge instead of running past it, so no window holds mirrored data unless
    the volume is smaller than the patch along an axis. Then the window extends past the
    edge (``stop > size``; fill it with :func:`crop_window`), and a
    :class:`~segmentation.errors.InputError` is raised when less than ``min_real_fraction``
    of the patch would be real data.
    """
    if len(shape) != 3 or len(patch) != 3 or min(patch) < 1:
        raise InputError(f"need a 3D shape and a positive 3D patch, got {shape}, {patch}")
    fraction = real_fraction(shape, patch)
    if fraction < min_real_fraction:
        raise InputError(
            f"a {tuple(patch)} patch on a {tuple(shape)} stack would be "
            f"{100 * (1 - fraction):.0f}% mirrored data; use a smaller patch"
        )
    starts = [_axis_starts(n, p) for n, p in zip(shape, patch, strict=True)]
    return [
        (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]


def is_background_patch(labels_patch: np.ndarray, max_background_fraction: float = 0.98) -> bool:
    """True when more than ``max_background_fraction`` of the patch is background (0)."""
    labels_patch = np.asarray(labels_patch)
    if labels_patch.size == 0:
        return True
    return float(np.mean(labels_patch == 0)) > max_background_fraction


@dataclass
class _PreparedStack:
    image: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    foreground_index: np.ndarray
    #: Boundary target and its weights computed from the Z-flipped labels, flipped back (the
    #: foreground channel is symmetric in Z); None when flipping the labels along Z flips the
    #: boundaries too (every mode except "anisotropic").
    z_flipped_boundary: tuple[np.ndarray, np.ndarray] | None = None
    #: The labels themselves, kept only for ``PatchDataset(keep_labels=True)``.
    labels: np.ndarray | None = None


class PatchDataset(Dataset):
    """Patches of normalised stacks with their targets and voxel weights.

    Targets are (2, Z, Y, X): boundaries and foreground
    (:func:`~segmentation.training.targets.make_targets`). Weights are, for the boundary
    channel, :func:`~segmentation.training.targets.edge_weights` of the U-Net weight map and,
    for the foreground channel, the U-Net weight map itself
    (:func:`~segmentation.training.weight_maps.unet_weight_map`, computed once per stack on the
    whole volume, so patch borders do not change it; cached on disk with ``cache_dir``).
    Voxels of a patch that lie outside the stack (padding) get weight 0. Targets that
    are not symmetric in Z ("anisotropic" boundaries) are also computed from the Z-flipped
    labels, so that a Z-flipped patch gets the targets of its flipped labels (see
    :func:`~segmentation.training.augmentation.augment`).

    Two modes:

    - random (``grid=False``): ``samples_per_epoch`` patches per epoch; a patch is centred on
      a random cell voxel with probability ``foreground_bias``, otherwise placed uniformly;
      with ``max_background_fraction`` set, patches that are almost all background are
      redrawn (up to 10 times). Stacks are drawn in proportion to their voxel counts.
    - grid (``grid=True``): every window of :func:`patch_grid` of every stack, in order
      (validation).

    Item ``i`` of epoch ``e`` is a deterministic function of ``(seed, e, i)``: augmentation
    and patch placement use ``numpy.random.default_rng([seed, e, i])``, so results do not
    depend on DataLoader workers. Call :meth:`set_epoch` before each epoch (DataLoader
    workers that are re-created each epoch pick up the new value).

    Parameters
    ----------
    stacks : sequence of (image, labels)
        Images (C, Z, Y, X) float32, already normalised (``segmentation.io.normalize_percentile``);
        labels (Z, Y, X) integer, 0 = background.
    patch_size : (int, int, int)
        Patch shape (Z, Y, X).
    samples_per_epoch : int
        Number of random patches per epoch (random mode).
    grid : bool
        Use grid windows instead of random patches.
    augmentation : AugmentationConfig or None
        ``None`` disables augmentation (validation).
    foreground_bias : float
        Probability of centring a random patch on a cell voxel.
    max_background_fraction : float or None
        Redraw random patches with more background than this; ``None`` keeps all.
    weight_map_options : dict, optional
        Keyword arguments of ``unet_weight_map`` (``w0``, ``sigma``, ``class_balance``...).
    edge_options : dict, optional
        Keyword arguments of ``edge_weights`` (``edge_multiplier``, ``background_weight``...).
    target_options : dict, optional
        Keyword arguments of ``make_targets`` (``mode``, ``connectivity``).
    voxel_sizes : sequence of (z, y, x) or None, optional
        Voxel size of each stack, for anisotropic weight maps.
    cache_dir : Path, optional
        Where weight maps are cached; ``None`` computes them without caching.
    names : sequence of str, optional
        Stack names used in cache file names.
    seed : int
        Base seed.
    min_real_fraction : float
        Smallest fraction of real (not padded) data in a patch.
    padding : {"reflect", "edge"}
        How the image is filled where a patch lies outside the stack. Inference edge-pads
        stacks with fewer planes than its window (a 25-plane stack sits in a 32-plane window,
        3 repeated planes before and 4 after), so "edge" trains on what inference shows.
    z_margin : int
        Random patches may reach up to this many planes before the first or past the last
        plane of a stack (more when the stack has fewer planes than the patch, so that it
        can be centred), so that the stack's first and last planes are also seen away from
        the patch border, as in inference. 0 keeps every patch inside the stack along Z
        when it fits.
    keep_labels : bool
        Also return each patch's labels (``"labels"``, int64 (Z, Y, X)), spatially
        augmented as the targets are, e.g. to measure what the network is shown
        (``benchmarks/training_patch_statistics.py``). Labels are padded as the image is.
    """

    def __init__(
        self,
        stacks: Sequence[tuple[np.ndarray, np.ndarray]],
        patch_size: tuple[int, int, int],
        *,
        samples_per_epoch: int = 256,
        grid: bool = False,
        augmentation: AugmentationConfig | None = None,
        foreground_bias: float = 0.7,
        max_background_fraction: float | None = 0.98,
        weight_map_options: dict | None = None,
        edge_options: dict | None = None,
        target_options: dict | None = None,
        voxel_sizes: Sequence[tuple[float, float, float] | None] | None = None,
        cache_dir: Path | None = None,
        names: Sequence[str] | None = None,
        seed: int = 0,
        min_real_fraction: float = 0.6,
        padding: str = "reflect",
        z_margin: int = 0,
        keep_labels: bool = False,
    ) -> None:
        if not stacks:
            raise InputError("no training stacks given")
        if padding not in ("reflect", "edge"):
            raise InputError(f"padding must be 'reflect' or 'edge', got {padding!r}")
        largest_margin = int((1.0 - min_real_fraction) * patch_size[0])
        if not 0 <= z_margin <= largest_margin:
            raise InputError(
                f"z_margin must lie in 0..{largest_margin} for a {patch_size[0]}-plane patch "
                f"(at least {min_real_fraction:.0%} of a patch is real data), got {z_margin}"
            )
        self.padding = padding
        self.keep_labels = bool(keep_labels)
        self.z_margin = int(z_margin)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.grid = grid
        self.augmentation = augmentation
        self.foreground_bias = float(foreground_bias)
        self.max_background_fraction = max_background_fraction
        self.seed = int(seed)
        self.epoch = 0
        self.target_options = dict(target_options or {})
        names = list(names) if names is not None else [f"stack{i}" for i in range(len(stacks))]
        voxel_sizes = list(voxel_sizes) if voxel_sizes is not None else [None] * len(stacks)
        if len(names) != len(stacks) or len(voxel_sizes) != len(stacks):
            raise InputError("names and voxel_sizes need one entry per stack")
        self._stacks = [
            self._prepare(
                image,
                labels,
                name,
                voxel_size,
                weight_map_options or {},
                edge_options or {},
                cache_dir,
                min_real_fraction,
            )
            for (image, labels), name, voxel_size in zip(stacks, names, voxel_sizes, strict=True)
        ]
        self._windows = (
            [
                (index, window)
                for index, stack in enumerate(self._stacks)
                for window in patch_grid(
                    stack.targets.shape[1:], self.patch_size, min_real_fraction=min_real_fraction
                )
            ]
            if grid
            else []
        )
        sizes = np.array([stack.targets[0].size for stack in self._stacks], dtype=np.float64)
        self._stack_probability = sizes / sizes.sum()

    def _prepare(
        self, image, labels, name, voxel_size, map_options, edge_options, cache_dir, min_real
    ) -> _PreparedStack:
        image = np.asarray(image, dtype=np.float32)
        labels = np.asarray(labels)
        if image.ndim != 4 or labels.ndim != 3 or image.shape[1:] != labels.shape:
            raise InputError(
                f"{name}: need image (C, Z, Y, X) and labels (Z, Y, X) of the same size, "
                f"got {image.shape} and {labels.shape}"
            )
        fraction = real_fraction(labels.shape, self.patch_size)
        if fraction < min_real:
            raise InputError(
                f"{name}: stack {labels.shape} is too small for patch {self.patch_size}; "
                "use a smaller patch"
            )
        options = {**map_options, "voxel_size": voxel_size}
        if cache_dir is not None:
            weight_map = cached_weight_map(labels, Path(cache_dir), name, **options)
        else:
            weight_map = unet_weight_map(labels, **options)
        targets = make_targets(labels, **self.target_options)
        # weights in half precision (their relative error, 5e-4, is far below what training
        # notices) and voxel indices in 32 bits: many stacks then fit in memory together
        weights = np.stack(
            [edge_weights(targets[0], weight_map, **edge_options), weight_map]
        ).astype(np.float16)
        foreground_index = np.flatnonzero(targets[1])
        if labels.size < 2**31:
            foreground_index = foreground_index.astype(np.int32)
        flipped_boundary = make_targets(labels[::-1], **self.target_options)[0, ::-1]
        z_flipped_boundary = None
        if not np.array_equal(flipped_boundary, targets[0]):
            z_flipped_boundary = (
                np.ascontiguousarray(flipped_boundary, dtype=np.uint8),
                edge_weights(flipped_boundary, weight_map, **edge_options).astype(np.float16),
            )
        # binary targets are stored in one byte a voxel, fractional ones
        # ("anisotropic-symmetric" boundaries) in two
        stored_dtype = np.uint8 if np.array_equal(targets, np.round(targets)) else np.float16
        return _PreparedStack(
            image,
            targets.astype(stored_dtype),
            weights,
            foreground_index,
            z_flipped_boundary,
            labels if self.keep_labels else None,
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the prepared stacks (images, targets, weights, indices)."""
        total = 0
        for stack in self._stacks:
            arrays = [stack.image, stack.targets, stack.weights, stack.foreground_index]
            arrays += list(stack.z_flipped_boundary or ()) + [stack.labels]
            total += sum(array.nbytes for array in arrays if array is not None)
        return total

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random patches and augmentations are produced."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._windows) if self.grid else self.samples_per_epoch

    def _random_window(self, stack: _PreparedStack, rng: np.random.Generator) -> Window:
        shape = stack.targets.shape[1:]
        if stack.foreground_index.size and rng.random() < self.foreground_bias:
            flat = stack.foreground_index[rng.integers(stack.foreground_index.size)]
            centre = np.unravel_index(flat, shape)
            starts = [c - p // 2 for c, p in zip(centre, self.patch_size, strict=True)]
        else:
            starts = [
                rng.integers(0, max(n - p, 0) + 1)
                for n, p in zip(shape, self.patch_size, strict=True)
            ]
        starts = [
            int(min(max(s, 0), max(n - p, 0)))
            for s, n, p in zip(starts, shape, self.patch_size, strict=True)
        ]
        if self.z_margin:
            starts[0] = self._z_start(starts[0], shape[0], rng)
        return tuple(slice(s, s + p) for s, p in zip(starts, self.patch_size, strict=True))

    def _z_start(self, start: int, planes: int, rng: np.random.Generator) -> int:
        """Move a patch's first plane by up to ``z_margin`` past the stack's Z ends.

        The padding on either side stays within ``max(z_margin, ceil((patch - planes) / 2))``
        planes; a stack shorter than the patch is placed uniformly within that range.
        """
        patch = self.patch_size[0]
        margin = max(self.z_margin, -(-(patch - planes) // 2))
        low, high = -margin, planes - patch + margin
        if planes <= patch:
            return int(rng.integers(low, high + 1))
        # start lies in 0..planes - patch, so a shift of at most z_margin stays in low..high
        shift = int(rng.integers(0, self.z_margin + 1))
        return start - shift if start <= (planes - patch) // 2 else start + shift

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.grid:
            stack_index, window = self._windows[index]
            stack = self._stacks[stack_index]
        else:
            stack = self._stacks[rng.choice(len(self._stacks), p=self._stack_probability)]
            for _ in range(10):
                window = self._random_window(stack, rng)
                if self.max_background_fraction is None or not is_background_patch(
                    crop_window(stack.targets[1], window), self.max_background_fraction
                ):
                    break
        image = crop_window(stack.image, window, mode=self.padding)
        targets = crop_window(stack.targets, window).astype(np.float32)
        weights = crop_window(stack.weights, window, mode="constant").astype(np.float32)
        n_targets = len(targets)
        if stack.labels is not None:
            # labels ride along as one more target channel: the same spatial transforms,
            # nearest-neighbour (ids below 2**24 are exact in float32)
            labels = crop_window(stack.labels, window, mode=self.padding)[None].astype(np.float32)
            targets = np.concatenate([targets, labels])
            weights = np.concatenate([weights, np.ones_like(labels)])
        if self.augmentation is not None:
            z_flipped = None
            if stack.z_flipped_boundary is not None:
                boundary, boundary_weights = stack.z_flipped_boundary
                flipped_targets, flipped_weights = targets.copy(), weights.copy()
                flipped_targets[0] = crop_window(boundary, window)
                flipped_weights[0] = crop_window(boundary_weights, window, mode="constant")
                z_flipped = (flipped_targets, flipped_weights)
            image, targets, weights = augment(
                image, targets, weights, rng, self.augmentation, z_flipped=z_flipped
            )
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(targets[:n_targets], dtype=np.float32)),
            "weight": torch.from_numpy(np.ascontiguousarray(weights[:n_targets], dtype=np.float32)),
        }
        if stack.labels is not None:
            item["labels"] = torch.from_numpy(np.rint(targets[n_targets]).astype(np.int64))
        return item
