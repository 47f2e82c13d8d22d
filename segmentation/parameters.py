"""The one place where user-facing parameters and their defaults are defined.

The library, the CLI, the REST API and the web UI all read their defaults from here, so a
parameter has one name and one default everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

PartitionMethod = Literal["agglomeration", "multicut"]
Device = Literal["auto", "cpu", "cuda"]
Autocast = Literal["auto", "none", "bf16", "fp16"]

#: Boundary probability above which a voxel counts as boundary for the distance transform.
DEFAULT_THRESHOLD = 0.8
#: Width (in XY pixels) of the local-maximum footprint that places watershed seeds.
DEFAULT_FOOTPRINT = 17
#: Partition cutoff: a boundary with mean probability above this separates two cells.
DEFAULT_CUTOFF = 0.6
DEFAULT_METHOD: PartitionMethod = "agglomeration"
#: Smallest cell kept, in voxels.
DEFAULT_MIN_SIZE = 300
#: Largest cell kept, in voxels (None: no limit).
DEFAULT_MAX_SIZE: int | None = None
#: Sliding-window size (Z, Y, X) of the network. Windows are multiples of the network's grid
#: (8 for the bundled U-Net): shorter axes are edge-padded (a 25-plane stack to 32 planes),
#: longer ones use this size rounded down.
DEFAULT_PATCH: tuple[int, int, int] = (32, 256, 256)
#: Fraction of overlap between neighbouring windows.
DEFAULT_OVERLAP = 0.25
DEFAULT_DEVICE: Device = "auto"
#: Mixed precision of the network: "auto" is float16 on a GPU, bfloat16 on a CPU that runs
#: it natively (AVX-512 or Arm BF16) and float32 on other CPUs, which emulate bfloat16 slowly.
DEFAULT_AUTOCAST: Autocast = "auto"
#: Average the network's output with its output on the Z-flipped stack (twice as slow).
DEFAULT_TEST_TIME_FLIP = False
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
#: Largest number of voxels (C excluded) a stack may have.
DEFAULT_MAX_VOXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class SegmentationParameters:
    """Parameters of the post-network stages (watershed, graph, post-processing).

    Changing any of these does not require running the network again.
    """

    threshold: float = DEFAULT_THRESHOLD
    footprint: int = DEFAULT_FOOTPRINT
    cutoff: float = DEFAULT_CUTOFF
    method: PartitionMethod = DEFAULT_METHOD
    min_size: int = DEFAULT_MIN_SIZE
    max_size: int | None = DEFAULT_MAX_SIZE
    min_volume_um3: float | None = None
    max_volume_um3: float | None = None
    foreground_threshold: float = DEFAULT_FOREGROUND_THRESHOLD
    fragment_ratio: float = DEFAULT_FRAGMENT_RATIO
    rim_distance: float = DEFAULT_RIM_DISTANCE
    foreground_seed_distance: float = DEFAULT_FOREGROUND_SEED_DISTANCE

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
    test_time_flip: bool = DEFAULT_TEST_TIME_FLIP

    def as_dict(self) -> dict:
        return asdict(self)
