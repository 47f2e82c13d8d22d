"""The one place where user-facing parameters, their defaults and their limits are defined.

The library, the CLI, the REST API and the web UI all read their defaults from here and
check values with the functions here (:class:`SegmentationParameters` and
:class:`InferenceParameters` check themselves when they are created), so a parameter has
one name, one default, one range and one message everywhere, and a bad value is refused
before any work starts.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from segmentation.errors import InputError

PartitionMethod = Literal["agglomeration", "multicut"]
#: What a region-graph edge's weight is: the model's learned merge classifier (1 - merge
#: probability, from its card) or the face's mean boundary probability.
EdgeWeights = Literal["learned", "boundary"]
Device = Literal["auto", "cpu", "cuda"]
Autocast = Literal["auto", "none", "bf16", "fp16"]
#: What runs the network: PyTorch, or (optional packages, CPU only) OpenVINO, ONNX Runtime.
Engine = Literal["auto", "torch", "openvino", "onnxruntime"]
#: Format of the labels and boundaries: two TIFF files, or one OME-Zarr folder.
OutputFormat = Literal["tiff", "ome-zarr"]
METHODS: tuple[str, ...] = get_args(PartitionMethod)
EDGE_WEIGHTS: tuple[str, ...] = get_args(EdgeWeights)
DEVICES: tuple[str, ...] = get_args(Device)
AUTOCASTS: tuple[str, ...] = get_args(Autocast)
ENGINES: tuple[str, ...] = get_args(Engine)
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
DEFAULT_OUTPUT_FORMAT: OutputFormat = "tiff"

#: Boundary probability above which a voxel counts as boundary for the distance transform.
DEFAULT_THRESHOLD = 0.8
#: Width (in XY pixels) of the local-maximum footprint that places watershed seeds.
DEFAULT_FOOTPRINT = 17
#: Partition cutoff: a boundary with mean probability above this separates two cells.
DEFAULT_CUTOFF = 0.6
DEFAULT_METHOD: PartitionMethod = "multicut"
#: Learned edge weights where the model has an edge classifier (else the boundary mean).
DEFAULT_EDGE_WEIGHTS: EdgeWeights = "learned"
#: Smallest cell kept, in voxels.
DEFAULT_MIN_SIZE = 300
#: Largest cell kept, in voxels (None: no limit).
DEFAULT_MAX_SIZE: int | None = None
#: Sliding-window size (Z, Y, X) of the network. Windows are multiples of the network's grid
#: (8 for the bundled U-Net): shorter axes are edge-padded (a 25-plane stack to 32 planes),
#: longer ones use this size rounded down. 288 px windows overlapping by 1/8 cover 1024 px in
#: 4 windows (43 px overlaps) where 256 px windows overlapping by 1/4 need 5: 16 windows a
#: 1024 x 1024 stack instead of 25, 19 % fewer voxels through the network (network 18 % faster
#: on a 2-core AVX2 CPU, held-out F1 within 0.004; benchmarks/BENCHMARKS.md).
DEFAULT_PATCH: tuple[int, int, int] = (32, 288, 288)
#: Fraction of overlap between neighbouring windows.
DEFAULT_OVERLAP = 0.125
DEFAULT_DEVICE: Device = "auto"
#: Mixed precision of the network: "auto" is float16 on a GPU, bfloat16 on a CPU that runs
#: it natively (AVX-512 or Arm BF16) and float32 on other CPUs, which emulate bfloat16 slowly.
DEFAULT_AUTOCAST: Autocast = "auto"
#: Engine of the network: "auto" is the fastest one installed for the device (OpenVINO on a
#: CPU for germseg's U-Net when it is installed, else PyTorch; see
#: ``segmentation.inference.engines``).
DEFAULT_ENGINE: Engine = "auto"
#: The package each optional engine needs (``pip install -r requirements-engines.txt``).
ENGINE_PACKAGES: dict[str, str] = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
#: Average the network's output with its output on the Z-flipped stack (twice as slow).
DEFAULT_TEST_TIME_FLIP = False
#: Resample stacks whose Z step lies outside the model's trained range (model card).
DEFAULT_RESAMPLE_Z = True
#: Mean foreground probability under which a region is background (label 0).
DEFAULT_FOREGROUND_THRESHOLD = 0.5
#: Foreground that the watershed flooded from background gets seeds at least this many X
#: pixels from a boundary or the foreground's edge (0 disables; see
#: ``segmentation.watershed.distance_transform_watershed``).
DEFAULT_FOREGROUND_SEED_DISTANCE = 6.0
#: Fragments at most this fraction of the size of the cell they lie against are merged
#: into it (0 disables; see ``segmentation.postprocess.merge_fragments``).
DEFAULT_FRAGMENT_RATIO = 0.1
#: Smallest fraction of a fragment's surface that must touch that cell.
DEFAULT_FRAGMENT_CONTACT = 0.7
#: Cells grow into unlabelled foreground voxels up to this many X pixels away (0 disables;
#: see ``segmentation.postprocess.grow_into_foreground``).
DEFAULT_RIM_DISTANCE = 2.0
VoxelSize = tuple[float, float, float]

#: Largest number of voxels (C excluded) a stack may have.
DEFAULT_MAX_VOXELS = 64 * 1024 * 1024
#: Memory (GB) a segmentation may use: a stack whose in-memory run would need more is
#: segmented blockwise (``segmentation.blockwise``), within about this much.
DEFAULT_MEMORY_BUDGET_GB = 4.0

# Limits ---------------------------------------------------------------------------------
#: Largest watershed seed footprint, in XY pixels.
MAX_FOOTPRINT = 255
#: Largest rim distance, in X pixels (the web UI slider's range).
MAX_RIM_DISTANCE = 20.0
#: Largest foreground seed distance, in X pixels (the web UI slider's range).
MAX_FOREGROUND_SEED_DISTANCE = 30.0
#: Largest window overlap: 0.9 already runs about 1,000 times the windows of 0 on a stack.
MAX_OVERLAP = 0.9
#: Window axes are multiples of this: the bundled U-Net's grid (its downsampling factor).
PATCH_MULTIPLE = 8
#: Longest window axis, in voxels.
MAX_PATCH_AXIS = 512
#: Most voxels in one window (64 x 512 x 512); the network's activations grow with it.
MAX_PATCH_VOXELS = 64 * 512 * 512
#: Most windows per forward pass.
MAX_BATCH_SIZE = 64
#: Largest stack any voxel limit may allow, and so the largest cell size in voxels.
MAX_STACK_VOXELS = 2**32
#: Largest cell volume limit, in µm³ (1 mm³; a whole adult worm is about 0.005 mm³).
MAX_VOLUME_UM3 = 1e9
#: Smallest and largest voxel size along any axis, in µm.
MIN_VOXEL_SIZE_UM = 1e-3
MAX_VOXEL_SIZE_UM = 1e3
#: Smallest and largest memory budget, in GB (the interpreter, PyTorch and one network
#: window already take about 1 GB).
MIN_MEMORY_BUDGET_GB = 1.5
MAX_MEMORY_BUDGET_GB = 4096.0


def _shown(value: object) -> str:
    """``value`` as a user typed it: numbers with ``:g`` (whole ones below 1e15 in full, as
    a form that reads numbers as floats passes 99999999999), anything else with ``repr``."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def check_range(name: str, value: object, low: float, high: float) -> float:
    """``value`` as a float, if it is a finite number in ``[low, high]``.

    Raises
    ------
    InputError
        Otherwise (NaN and infinities included), naming ``name`` and the range.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not low <= number <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {_shown(value)}")
    return number


def check_whole_number(name: str, value: object, low: int, high: int, unit: str) -> int:
    """``value`` as an int, if it is a whole number in ``[low, high]``.

    Raises
    ------
    InputError
        Otherwise (fractions, NaN and infinities included), naming ``name``, ``unit`` and
        the range.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (low <= number <= high and number == int(number)):
        raise InputError(
            f"{name} must be a whole number of {unit} from {low:,} to {high:,}, "
            f"got {_shown(value)}"
        )
    return int(number)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value``, if it is one of ``choices``.

    Raises
    ------
    InputError
        Otherwise, listing the choices.
    """
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}: use {' or '.join(choices)}")
    return str(value)


def installed_engines() -> tuple[str, ...]:
    """The engines this installation can run: ``torch``, and each optional one installed."""
    found = [
        engine
        for engine, package in ENGINE_PACKAGES.items()
        if importlib.util.find_spec(package) is not None
    ]
    return ("torch", *found)


def check_engine(value: object) -> str:
    """``value``, if it is ``auto`` or an engine that is installed.

    Raises
    ------
    InputError
        For an unknown engine (listing the choices) or one whose package is missing.
    """
    engine = check_choice("engine", value, ENGINES)
    if engine != "auto" and engine not in installed_engines():
        raise InputError(
            f"engine {engine} is not installed: pip install -r requirements-engines.txt "
            f"(or use --engine auto or torch)"
        )
    return engine


def check_volume(name: str, value: object) -> float | None:
    """A cell volume limit in µm³: None (no limit) or a number in (0, :data:`MAX_VOLUME_UM3`].

    Raises
    ------
    InputError
        For anything else (0, negative, NaN, infinite, larger than the limit).
    """
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 < number <= MAX_VOLUME_UM3:
        raise InputError(
            f"{name} must be a positive volume in µm³ up to {MAX_VOLUME_UM3:,.0f} (leave it "
            f"empty for no limit), got {_shown(value)}"
        )
    return number


def _numbers(values: object) -> tuple[float, ...]:
    """``values`` as floats; empty when they are a string or not a sequence of numbers."""
    if isinstance(values, str):
        return ()
    try:
        return tuple(float(value) for value in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return ()


def _shown_numbers(values: object, numbers: tuple[float, ...]) -> str:
    """What was given, as ``"a,b,c"`` when it was numbers, else as typed."""
    if numbers:
        return ",".join(_shown(number) for number in numbers)
    return repr(values) if isinstance(values, str) else str(values)


def _split_numbers(text: str) -> list[float] | str:
    """``"a,b,c"`` (or ``"axbxc"``) as floats, or ``text`` itself when it is not numbers."""
    try:
        return [float(part) for part in str(text).replace("x", ",").split(",")]
    except ValueError:
        return str(text)


def check_patch(patch: Sequence[object]) -> tuple[int, int, int]:
    """A network window (Z, Y, X): three multiples of :data:`PATCH_MULTIPLE` that fit.

    Each axis lies between :data:`PATCH_MULTIPLE` and :data:`MAX_PATCH_AXIS` and the window
    has at most :data:`MAX_PATCH_VOXELS` voxels.

    Raises
    ------
    InputError
        Otherwise, with the limits and an example.
    """
    sizes = _numbers(patch)
    fits = len(sizes) == 3 and all(
        PATCH_MULTIPLE <= size <= MAX_PATCH_AXIS and size % PATCH_MULTIPLE == 0
        for size in sizes
    )
    if not fits or math.prod(sizes) > MAX_PATCH_VOXELS:
        raise InputError(
            f"invalid patch {_shown_numbers(patch, sizes)}: give three whole numbers Z,Y,X, "
            f"each a multiple of {PATCH_MULTIPLE} from {PATCH_MULTIPLE} to {MAX_PATCH_AXIS}, "
            f"at most {MAX_PATCH_VOXELS:,} voxels in all, e.g. "
            + ",".join(str(size) for size in DEFAULT_PATCH)
        )
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def parse_patch(text: str) -> tuple[int, int, int]:
    """Parse a window size such as ``"32,256,256"`` (or ``"32x256x256"``) and check it.

    Raises
    ------
    InputError
        As :func:`check_patch`, also when the text is not three numbers.
    """
    return check_patch(_split_numbers(text))


def check_voxel_size(values: Sequence[object]) -> VoxelSize:
    """``values`` as a voxel size (z, y, x) in µm: three numbers in the voxel-size limits.

    Each lies between :data:`MIN_VOXEL_SIZE_UM` and :data:`MAX_VOXEL_SIZE_UM`.

    Raises
    ------
    InputError
        Otherwise (zero, negative, NaN and infinite sizes included).
    """
    sizes = _numbers(values)
    if len(sizes) != 3 or not all(
        MIN_VOXEL_SIZE_UM <= size <= MAX_VOXEL_SIZE_UM for size in sizes
    ):
        raise InputError(
            "voxel size must be three positive numbers Z,Y,X in µm, each from "
            f"{MIN_VOXEL_SIZE_UM:g} to {MAX_VOXEL_SIZE_UM:g} (e.g. 0.8,0.2,0.2), "
            f"got {_shown_numbers(values, sizes)}"
        )
    return sizes[0], sizes[1], sizes[2]


def parse_voxel_size(text: str) -> VoxelSize:
    """Parse ``"Z,Y,X"`` (micrometres) such as ``"0.8,0.2,0.2"`` and check it.

    Raises
    ------
    InputError
        As :func:`check_voxel_size`, also when the text is not three numbers.
    """
    return check_voxel_size(_split_numbers(str(text).replace(" ", "")))


def check_max_voxels(value: object) -> int:
    """A stack size limit: a whole number of voxels from 1 to :data:`MAX_STACK_VOXELS`.

    Raises
    ------
    InputError
        Otherwise.
    """
    return check_whole_number("max_voxels", value, 1, MAX_STACK_VOXELS, "voxels")


def check_memory_budget(value: object) -> float:
    """A memory budget in GB, from :data:`MIN_MEMORY_BUDGET_GB` to :data:`MAX_MEMORY_BUDGET_GB`.

    Raises
    ------
    InputError
        Otherwise (NaN and infinities included).
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not MIN_MEMORY_BUDGET_GB <= number <= MAX_MEMORY_BUDGET_GB:
        raise InputError(
            f"memory budget must be a number of GB from {MIN_MEMORY_BUDGET_GB:g} to "
            f"{MAX_MEMORY_BUDGET_GB:g}, got {_shown(value)}"
        )
    return number


@dataclass(frozen=True)
class SegmentationParameters:
    """Parameters of the post-network stages (watershed, graph, post-processing).

    Changing any of these does not require running the network again.
    """

    threshold: float = DEFAULT_THRESHOLD
    footprint: int = DEFAULT_FOOTPRINT
    cutoff: float = DEFAULT_CUTOFF
    method: PartitionMethod = DEFAULT_METHOD
    edge_weights: EdgeWeights = DEFAULT_EDGE_WEIGHTS
    min_size: int = DEFAULT_MIN_SIZE
    max_size: int | None = DEFAULT_MAX_SIZE
    min_volume_um3: float | None = None
    max_volume_um3: float | None = None
    foreground_threshold: float = DEFAULT_FOREGROUND_THRESHOLD
    fragment_ratio: float = DEFAULT_FRAGMENT_RATIO
    rim_distance: float = DEFAULT_RIM_DISTANCE
    foreground_seed_distance: float = DEFAULT_FOREGROUND_SEED_DISTANCE

    def __post_init__(self) -> None:
        """Check every value against its limits and store it with its own type.

        Raises
        ------
        InputError
            For the first value out of its limits, with a one-line message.
        """
        checked = {
            "threshold": check_range("threshold", self.threshold, 0.0, 1.0),
            "footprint": check_whole_number(
                "footprint", self.footprint, 1, MAX_FOOTPRINT, "XY pixels"
            ),
            "cutoff": check_range("cutoff", self.cutoff, 0.0, 1.0),
            "method": check_choice("method", self.method, METHODS),
            "edge_weights": check_choice("edge_weights", self.edge_weights, EDGE_WEIGHTS),
            "min_size": check_whole_number(
                "min_size", self.min_size, 0, MAX_STACK_VOXELS, "voxels"
            ),
            "max_size": None
            if self.max_size is None
            else check_whole_number("max_size", self.max_size, 1, MAX_STACK_VOXELS, "voxels"),
            "min_volume_um3": check_volume("min_volume_um3", self.min_volume_um3),
            "max_volume_um3": check_volume("max_volume_um3", self.max_volume_um3),
            "foreground_threshold": check_range(
                "foreground_threshold", self.foreground_threshold, 0.0, 1.0
            ),
            "fragment_ratio": check_range("fragment_ratio", self.fragment_ratio, 0.0, 1.0),
            "rim_distance": check_range("rim_distance", self.rim_distance, 0.0, MAX_RIM_DISTANCE),
            "foreground_seed_distance": check_range(
                "foreground_seed_distance",
                self.foreground_seed_distance,
                0.0,
                MAX_FOREGROUND_SEED_DISTANCE,
            ),
        }
        _check_lower_below_upper("min_size", checked["min_size"], "max_size", checked["max_size"])
        _check_lower_below_upper(
            "min_volume_um3",
            checked["min_volume_um3"],
            "max_volume_um3",
            checked["max_volume_um3"],
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InferenceParameters:
    """Parameters of the network stage."""

    patch: tuple[int, int, int] = field(default=DEFAULT_PATCH)
    overlap: float = DEFAULT_OVERLAP
    device: Device = DEFAULT_DEVICE
    #: Windows per forward pass; 1 is as fast on the CPU and halves the activations' memory.
    batch_size: int = 1
    autocast: Autocast = DEFAULT_AUTOCAST
    engine: Engine = DEFAULT_ENGINE
    test_time_flip: bool = DEFAULT_TEST_TIME_FLIP
    #: Show the network a stack whose Z step (voxel size) lies outside the model card's
    #: ``z_step_range`` resampled along Z to the nearest step in it.
    resample_z: bool = DEFAULT_RESAMPLE_Z

    def __post_init__(self) -> None:
        """Check every value against its limits and store it with its own type.

        Raises
        ------
        InputError
            For the first value out of its limits, with a one-line message.
        """
        for name in ("test_time_flip", "resample_z"):
            if getattr(self, name) not in (True, False):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        checked = {
            "patch": check_patch(self.patch),
            "overlap": check_range("overlap", self.overlap, 0.0, MAX_OVERLAP),
            "device": check_choice("device", self.device, DEVICES),
            "batch_size": check_whole_number(
                "batch_size", self.batch_size, 1, MAX_BATCH_SIZE, "windows"
            ),
            "autocast": check_choice("autocast", self.autocast, AUTOCASTS),
            "engine": check_engine(self.engine),
            "test_time_flip": bool(self.test_time_flip),
            "resample_z": bool(self.resample_z),
        }
        _check_engine_autocast(checked["engine"], checked["autocast"])
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_engine_autocast(engine: str, autocast: str) -> None:
    """Refuse a precision the engine cannot run: ONNX Runtime runs float32 only, OpenVINO
    float32 or bfloat16 (``auto`` always fits)."""
    refused = {"onnxruntime": ("bf16", "fp16"), "openvino": ("fp16",)}.get(engine, ())
    if autocast in refused:
        allowed = [choice for choice in AUTOCASTS if choice not in refused]
        raise InputError(
            f"engine {engine} cannot run autocast {autocast}: use {' or '.join(allowed)}"
        )


def _check_lower_below_upper(
    low_name: str, low: float | None, high_name: str, high: float | None
) -> None:
    """Refuse an upper limit that is not above its lower limit (either may be None)."""
    if low is not None and high is not None and high <= low:
        raise InputError(
            f"{high_name} ({_shown(high)}) must be larger than {low_name} ({_shown(low)})"
        )
