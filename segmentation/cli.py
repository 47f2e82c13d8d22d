"""The ``germseg`` command line: segment, synth, train, evaluate, serve.

A thin adapter over the library: every option maps to one library parameter with the same
name and the default from :mod:`segmentation.parameters`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation import __version__
from segmentation.errors import GermsegError, InputError
from segmentation.parameters import (
    AUTOCASTS,
    DEFAULT_AUTOCAST,
    DEFAULT_CUTOFF,
    DEFAULT_DEVICE,
    DEFAULT_EDGE_WEIGHTS,
    DEFAULT_ENGINE,
    DEFAULT_FOOTPRINT,
    DEFAULT_FOREGROUND_SEED_DISTANCE,
    DEFAULT_FRAGMENT_RATIO,
    DEFAULT_MAX_SIZE,
    DEFAULT_MAX_VOXELS,
    DEFAULT_MEMORY_BUDGET_GB,
    DEFAULT_METHOD,
    DEFAULT_MIN_SIZE,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_OVERLAP,
    DEFAULT_PATCH,
    DEFAULT_RESAMPLE_Z,
    DEFAULT_RIM_DISTANCE,
    DEFAULT_TEST_TIME_FLIP,
    DEFAULT_THRESHOLD,
    DEVICES,
    EDGE_WEIGHTS,
    ENGINES,
    MAX_FOOTPRINT,
    MAX_FOREGROUND_SEED_DISTANCE,
    MAX_OVERLAP,
    MAX_PATCH_AXIS,
    MAX_PATCH_VOXELS,
    MAX_RIM_DISTANCE,
    METHODS,
    OUTPUT_FORMATS,
    PATCH_MULTIPLE,
    InferenceParameters,
    SegmentationParameters,
    check_max_voxels,
    check_memory_budget,
    parse_patch,
    parse_voxel_size,
)

if TYPE_CHECKING:
    from segmentation.batch import BatchOptions, StackJob, StackOutcome
    from segmentation.model import LoadedModel
    from segmentation.pipeline import ProgressCallback

logger = logging.getLogger("segmentation")

EXIT_BAD_INPUT = 2


def _error(message: str) -> None:
    """Print a one-line error on stderr."""
    print(f"error: {message}", file=sys.stderr)


def parse_triple(text: str) -> tuple[int, int, int]:
    """Parse ``"Z,Y,X"`` into three positive integers."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers Z,Y,X, got {text!r}")
    return values  # type: ignore[return-value]


def _number(text: str) -> int | float:
    """Parse a number as typed: an int when it is one, else a float (checked later)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _choices(choices: Sequence[str]) -> str:
    """An option's metavar listing its choices, which the parameters themselves check."""
    return "{" + ",".join(choices) + "}"


def _add_segment_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment TIFF, ND2 or OME-Zarr stacks into one label per cell",
        description="Reads .tif/.tiff and .nd2 files and OME-Zarr (.zarr, .ome.zarr) folders. "
        "Writes <stem>_labels.tif, <stem>_boundaries.tif, <stem>_preview.gif and "
        "<stem>_cells.csv per input into --out (with --format ome-zarr, <stem>.ome.zarr "
        "instead of the two TIFFs), and cells.csv: every stack's cells, with a first column "
        "stack. A FOLDER gives every stack in it. In a batch (a FOLDER, --csv, --workers or "
        "--scheduler), stacks whose outputs are complete are skipped (--overwrite redoes "
        "them); stacks named one by one are always segmented. A stack that fails is "
        "reported in one line and the others go on (exit status 2).",
    )
    parser.add_argument(
        "inputs", nargs="*", type=Path, metavar="IN.tif|IN.nd2|IN.zarr|FOLDER"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        metavar="LIST.csv",
        help="also segment the stacks listed in this CSV's column image (paths relative to "
        "the CSV)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N single-threaded worker processes, each "
        "loading the model once (default: one stack after another in this process)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the running Dask cluster of this scheduler, e.g. tcp://host:8786 (its "
        "workers must see the stacks, --out and --weights at the same paths)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="segment stacks whose outputs in --out are complete too, replacing them",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="boundary probability threshold of the watershed (default %(default)s)",
    )
    parser.add_argument(
        "--footprint",
        type=_number,
        default=DEFAULT_FOOTPRINT,
        help=f"watershed seed footprint in XY pixels, 1 to {MAX_FOOTPRINT} "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--cutoff",
        type=float,
        default=DEFAULT_CUTOFF,
        help="partition cutoff: boundaries above it separate cells (default %(default)s)",
    )
    parser.add_argument("--method", default=DEFAULT_METHOD, metavar=_choices(METHODS))
    parser.add_argument(
        "--edge-weights",
        default=DEFAULT_EDGE_WEIGHTS,
        metavar=_choices(EDGE_WEIGHTS),
        help="region-graph edge weights: the model's learned merge classifier or the face's "
        "mean boundary (default %(default)s)",
    )
    parser.add_argument(
        "--min-size",
        type=_number,
        default=DEFAULT_MIN_SIZE,
        help="smallest cell kept, voxels (default %(default)s)",
    )
    parser.add_argument(
        "--max-size",
        type=_number,
        default=DEFAULT_MAX_SIZE,
        help="largest cell kept, voxels (default: no limit)",
    )
    parser.add_argument(
        "--fragment-ratio",
        type=float,
        default=DEFAULT_FRAGMENT_RATIO,
        help="merge segments at most this fraction of the size of the cell they mostly touch "
        "into it, e.g. a nucleus cut out of an oocyte; 0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--rim-distance",
        type=float,
        default=DEFAULT_RIM_DISTANCE,
        metavar="PIXELS",
        help="cells take back unlabelled foreground voxels up to this many X pixels away "
        f"(the rims of background super-pixels), 0 to {MAX_RIM_DISTANCE:g}; 0 disables "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--foreground-seed-distance",
        type=float,
        default=DEFAULT_FOREGROUND_SEED_DISTANCE,
        metavar="PIXELS",
        help="foreground that the watershed flooded from the background (a cell with a faint "
        "outer border) gets seeds at least this many X pixels deep, 0 to "
        f"{MAX_FOREGROUND_SEED_DISTANCE:g}; 0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--min-volume",
        type=float,
        default=None,
        metavar="UM3",
        help="smallest cell kept, µm³ (needs the voxel size in the file's metadata)",
    )
    parser.add_argument(
        "--max-volume",
        type=float,
        default=None,
        metavar="UM3",
        help="largest cell kept, µm³ (needs the voxel size in the file's metadata)",
    )
    parser.add_argument(
        "--patch",
        default=",".join(map(str, DEFAULT_PATCH)),
        metavar="Z,Y,X",
        help=f"network window size, each axis a multiple of {PATCH_MULTIPLE} (the bundled "
        f"model's grid) from {PATCH_MULTIPLE} to {MAX_PATCH_AXIS}, at most "
        f"{MAX_PATCH_VOXELS:,} voxels (default %(default)s); axes shorter than the window "
        "are edge-padded",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=DEFAULT_OVERLAP,
        help=f"window overlap fraction, 0 to {MAX_OVERLAP:g} (default %(default)s)",
    )
    parser.add_argument("--device", default=DEFAULT_DEVICE, metavar=_choices(DEVICES))
    parser.add_argument(
        "--autocast",
        default=DEFAULT_AUTOCAST,
        metavar=_choices(AUTOCASTS),
        help="network precision: auto = float16 on GPU, bfloat16 on CPUs that run it natively "
        "(AVX-512 or Arm BF16), else float32; none = float32 "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        metavar=_choices(ENGINES),
        help="what runs the network: auto = OpenVINO on a CPU when it is installed (1.4-2x "
        "faster than PyTorch there, see BENCHMARKS.md), else PyTorch; openvino and "
        "onnxruntime run on the CPU and need pip install -r requirements-engines.txt "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--test-time-flip",
        action="store_true",
        default=DEFAULT_TEST_TIME_FLIP,
        help="also run the network on the Z-flipped stack and average both outputs: about "
        "twice the network time, usually more accurate (see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--no-resample-z",
        dest="resample_z",
        action="store_false",
        default=DEFAULT_RESAMPLE_Z,
        help="show the network the stack's own planes even when its Z step (voxel size) lies "
        "outside the range the model was trained on (by default such stacks are resampled "
        "along Z for the network, e.g. a nearly isotropic crop)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="checkpoint with a model card beside it (default: bundled model)",
    )
    parser.add_argument(
        "--channels",
        default=None,
        metavar="I,J",
        help="input channels to use (cytoplasm, membrane) when C > 2",
    )
    parser.add_argument(
        "--voxel-size",
        default=None,
        metavar="Z,Y,X",
        help="voxel size in µm, used instead of the file's metadata (default: the file's; "
        "without one, distances assume a Z step of 5 XY pixels)",
    )
    parser.add_argument(
        "--max-voxels",
        type=_number,
        default=DEFAULT_MAX_VOXELS,
        help="largest stack accepted, in voxels Z*Y*X (default %(default)s)",
    )
    parser.add_argument(
        "--memory-budget",
        type=_number,
        default=DEFAULT_MEMORY_BUDGET_GB,
        metavar="GB",
        help="memory the segmentation may use: a stack that needs more in one piece is "
        "segmented blockwise through on-disk Zarr arrays (TIFF or OME-Zarr input; "
        "--max-voxels does not apply) (default %(default)s)",
    )
    parser.add_argument(
        "--blockwise",
        action="store_true",
        help="segment blockwise whatever the stack's size (see --memory-budget)",
    )
    parser.add_argument("--no-gif", action="store_true", help="do not write the GIF preview")
    parser.add_argument(
        "--format",
        default=DEFAULT_OUTPUT_FORMAT,
        metavar=_choices(OUTPUT_FORMATS),
        help="labels and boundaries as two TIFF files, or as one OME-Zarr folder "
        "<stem>.ome.zarr (boundary probability image, labels in labels/cells) that napari "
        "opens with a labels layer (default %(default)s)",
    )
    parser.set_defaults(handler=_run_segment)


def _run_segment(arguments: argparse.Namespace) -> int:
    from segmentation.batch import BatchOptions, list_stacks, split_complete, stack_jobs
    from segmentation.io import parse_channels
    from segmentation.io.formats import is_stack_path
    from segmentation.model import load_model
    from segmentation.outputs import check_output_format

    on_cluster = arguments.scheduler is not None or arguments.workers is not None
    try:
        # every value is checked here, before the model is loaded or a stack read
        jobs = stack_jobs(list_stacks(arguments.inputs, arguments.csv, arguments.out))
        segmentation_parameters = SegmentationParameters(
            threshold=arguments.threshold,
            footprint=arguments.footprint,
            cutoff=arguments.cutoff,
            method=arguments.method,
            edge_weights=arguments.edge_weights,
            min_size=arguments.min_size,
            max_size=arguments.max_size,
            min_volume_um3=arguments.min_volume,
            max_volume_um3=arguments.max_volume,
            fragment_ratio=arguments.fragment_ratio,
            rim_distance=arguments.rim_distance,
            foreground_seed_distance=arguments.foreground_seed_distance,
        )
        inference_parameters = InferenceParameters(
            patch=parse_patch(arguments.patch),
            overlap=arguments.overlap,
            device=arguments.device,
            autocast=arguments.autocast,
            engine=arguments.engine,
            test_time_flip=arguments.test_time_flip,
            resample_z=arguments.resample_z,
        )
        options = BatchOptions(
            segmentation_parameters=segmentation_parameters,
            inference_parameters=inference_parameters,
            channels=None if arguments.channels is None else parse_channels(arguments.channels),
            max_voxels=check_max_voxels(arguments.max_voxels),
            gif=not arguments.no_gif,
            voxel_size=(
                None if arguments.voxel_size is None else parse_voxel_size(arguments.voxel_size)
            ),
            format=check_output_format(arguments.format),
            memory_budget_gb=check_memory_budget(arguments.memory_budget),
            blockwise=arguments.blockwise,
        )
        if on_cluster:
            from segmentation.batch.cluster import check_cluster_options

            check_cluster_options(arguments.scheduler, arguments.workers)
            model = None
        else:
            model = load_model(arguments.weights, device=arguments.device)
    except ImportError as error:
        _error(f"--workers and --scheduler need Dask ({error}): pip install distributed")
        return EXIT_BAD_INPUT
    except GermsegError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    # a batch (a folder, a list, a cluster) that is run again goes on where it stopped;
    # stacks named one by one are always segmented, so new parameters take effect
    batch = (
        on_cluster
        or arguments.csv is not None
        or any(path.is_dir() and not is_stack_path(path) for path in arguments.inputs)
    )
    pending, skipped = (
        split_complete(jobs, arguments.out, options)
        if batch and not arguments.overwrite
        else (jobs, [])
    )
    return _segment_batch(arguments, jobs, pending, skipped, options, model)


def _outcome_lines(outcome: StackOutcome, out_dir: Path, output_format: str) -> list[str]:
    """What the CLI says about one stack of a batch: its warnings and one line."""
    path = outcome.job.path
    if outcome.status == "failed":
        return [f"error: {path}: {outcome.error}"]
    if outcome.status == "skipped":
        return [f"{path}: outputs complete in {out_dir}, skipped (--overwrite redoes it)"]
    result = outcome.result
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings.items())
    written = f"{out_dir / outcome.job.stem}_*"
    if output_format == "ome-zarr":
        written = f"{out_dir / outcome.job.stem}.ome.zarr and {written}"
    return [
        *(f"warning: {warning}" for warning in result.warnings),
        f"{path}: {result.n_cells} cells ({timings}) -> {written}",
    ]


def _segment_batch(
    arguments: argparse.Namespace,
    jobs: Sequence[StackJob],
    pending: Sequence[StackJob],
    skipped: Sequence[StackOutcome],
    options: BatchOptions,
    model: LoadedModel | None,
) -> int:
    """Segment ``pending`` in this process with ``model``, or on a Dask cluster when it is
    None; report every stack as it finishes, then gather the cell tables."""
    from tqdm import tqdm

    from segmentation.batch import gather_cell_tables, run_in_process

    statuses: dict[str, str] = {}
    window_bars: list[tqdm] = []

    def window_progress(job: StackJob) -> ProgressCallback:
        def progress(done: int, total: int) -> None:
            if not window_bars:
                window_bars.append(
                    tqdm(total=total, desc=job.path.name, unit="window", file=sys.stderr,
                         leave=False)
                )
            window_bars[0].update(done - window_bars[0].n)

        return progress

    failure: GermsegError | None = None
    # one stack has its windows' progress bar only
    with tqdm(
        total=len(jobs), desc="stacks", unit="stack", file=sys.stderr, disable=len(jobs) < 2
    ) as stacks_bar:

        def report(outcome: StackOutcome) -> None:
            for bar in window_bars:
                bar.close()
            window_bars.clear()
            for line in _outcome_lines(outcome, arguments.out, options.format):
                tqdm.write(line, file=sys.stderr)
            statuses[outcome.job.stem] = outcome.status
            stacks_bar.update()

        for outcome in skipped:
            report(outcome)
        try:
            if model is not None:
                for outcome in run_in_process(
                    pending, arguments.out, model, options, window_progress
                ):
                    report(outcome)
            elif pending:
                from segmentation.batch.cluster import batch_client, run_on_cluster

                # Dask's own log lines follow -v like germseg's
                logging.getLogger("distributed").setLevel(logging.getLogger().level)
                with batch_client(arguments.scheduler, arguments.workers) as client:
                    for outcome in run_on_cluster(
                        client, pending, arguments.out, options, arguments.weights
                    ):
                        report(outcome)
        except GermsegError as error:  # the cluster or its model: no stack can run
            failure = error
    if failure is not None:  # said once the bar is closed, on a line of its own
        _error(str(failure))
        return EXIT_BAD_INPUT
    finished = [job.stem for job in jobs if statuses[job.stem] != "failed"]
    if finished:
        table = gather_cell_tables(arguments.out, finished)
        print(f"cells of {len(finished)} stacks -> {table}", file=sys.stderr)
    return EXIT_BAD_INPUT if len(finished) < len(jobs) else 0


def _add_synth_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="write a synthetic germline phantom (image.tif) and its truth (labels.tif)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--shape", type=parse_triple, default=(25, 1024, 1024), metavar="Z,Y,X")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_run_synth)


def _run_synth(arguments: argparse.Namespace) -> int:
    from segmentation.synthetic import write_phantom

    image_path, labels_path = write_phantom(arguments.out, arguments.shape, arguments.seed)
    print(f"wrote {image_path} and {labels_path}", file=sys.stderr)
    return 0


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare label volumes with ground truth (F1 vs IoU, adapted Rand, VOI)",
        description="Either --pred and --gt, or --csv with columns pred,gt (paths relative to "
        "the CSV). Writes evaluation.csv and f1_vs_iou.png into --out. A pair that cannot be "
        "read is reported in one line and the others are still evaluated (exit status 2).",
    )
    parser.add_argument("--pred", type=Path, metavar="P.tif")
    parser.add_argument("--gt", type=Path, metavar="G.tif")
    parser.add_argument("--csv", type=Path, metavar="PAIRS.csv")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR")
    parser.add_argument(
        "--min-gt-size",
        type=int,
        default=0,
        metavar="VOXELS",
        help="leave out ground-truth cells under this many voxels (fragments at a crop's "
        "border) and the predicted cells lying mostly on them (default 0: keep all)",
    )
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(arguments: argparse.Namespace) -> int:
    from segmentation.evaluation import (
        evaluate_segmentation,
        plot_f1_vs_iou,
        write_evaluation_csv,
    )
    from segmentation.io import read_labels

    try:
        if arguments.min_gt_size < 0:
            raise InputError(
                f"--min-gt-size {arguments.min_gt_size} is negative: give 0 or more voxels"
            )
        pairs = _evaluation_pairs(arguments)
    except GermsegError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    status = 0
    results = []
    for name, pred_path, gt_path in pairs:
        try:
            prediction, truth = read_labels(pred_path), read_labels(gt_path)
            if prediction.shape != truth.shape:
                raise InputError(
                    f"{pred_path} has shape {prediction.shape} but {gt_path} has {truth.shape}: "
                    "compare label volumes of the same stack"
                )
        except GermsegError as error:
            # one bad pair of a batch is reported; the others are still evaluated
            _error(str(error))
            status = EXIT_BAD_INPUT
            continue
        results.append(
            (name, evaluate_segmentation(truth, prediction, min_gt_size=arguments.min_gt_size))
        )
    if not results:
        return status
    arguments.out.mkdir(parents=True, exist_ok=True)
    csv_path = write_evaluation_csv(arguments.out / "evaluation.csv", results)
    plot_path = plot_f1_vs_iou(arguments.out / "f1_vs_iou.png", results)
    if arguments.json:
        print(json.dumps({name: result for name, result in results}, indent=2))
    else:
        for name, result in results:
            print(
                f"{name}: F1@0.5 {result['f1_iou50']:.3f}, adapted Rand error "
                f"{result['adapted_rand_error']:.3f}, {result['n_pred']} predicted / "
                f"{result['n_gt']} true cells"
                + (
                    f" (left out: {result['ignored_gt']} true cells under "
                    f"{result['min_gt_size']} voxels, {result['ignored_pred']} predicted on them)"
                    if result["min_gt_size"] > 1
                    else ""
                )
            )
    print(f"wrote {csv_path} and {plot_path}", file=sys.stderr)
    return status


def _evaluation_pairs(arguments: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    if arguments.csv is not None:
        import csv

        if not arguments.csv.is_file():
            raise InputError(f"{arguments.csv} not found: give a CSV with columns pred,gt")
        with arguments.csv.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"pred", "gt"} <= set(rows[0]):
            raise InputError(f"{arguments.csv} needs a header with columns pred,gt")
        base = arguments.csv.parent
        pairs = [(r["pred"].strip(), r["gt"].strip()) for r in rows]
        stems = [Path(pred).stem for pred, _ in pairs]
        predictions = [pred for pred, _ in pairs]
        # a row is named by its prediction's file name; where those clash, by the
        # prediction's path, and where that repeats too, by both paths
        names = [
            stem
            if stems.count(stem) == 1
            else pred
            if predictions.count(pred) == 1
            else f"{pred} vs {gt}"
            for stem, (pred, gt) in zip(stems, pairs, strict=True)
        ]
        return [
            (name, base / pred, base / gt)
            for name, (pred, gt) in zip(names, pairs, strict=True)
        ]
    if arguments.pred is None or arguments.gt is None:
        raise InputError("give --pred P.tif and --gt G.tif, or --csv PAIRS.csv")
    return [(arguments.pred.stem, arguments.pred, arguments.gt)]


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    from segmentation.training.targets import BOUNDARY_MODES
    from segmentation.training.trainer import LR_SCHEDULES, TrainingConfig

    defaults = TrainingConfig()
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the U-Net on labelled stacks",
        description="--data is a CSV (columns image, mask, optional split) or a folder of "
        "image/label pairs. Writes best_checkpoint.pytorch, last_checkpoint.pytorch (each with "
        "a model card) and training_log.csv into --out.",
    )
    parser.add_argument("--data", type=Path, required=True, metavar="CSV|DIR")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="start from these weights (fine-tuning), e.g. the bundled model",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--patch", type=parse_triple, default=defaults.patch, metavar="Z,Y,X")
    parser.add_argument("--batch", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", action="store_true", help="continue from DIR's last checkpoint")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast (GPUs, and CPUs with AVX-512 or Arm BF16; far slower elsewhere)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--patches-per-epoch", type=int, default=defaults.patches_per_epoch)
    parser.add_argument("--f-maps", type=int, default=defaults.f_maps)
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.early_stopping_patience,
        help="stop after this many epochs without validation improvement",
    )
    parser.add_argument(
        "--lr-patience",
        type=int,
        default=defaults.scheduler_patience,
        help="halve the learning rate after this many epochs without validation improvement "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=defaults.lr_schedule,
        help="plateau: halve the rate after --lr-patience flat epochs; cosine: lower it along "
        "half a cosine to 2%% of --lr at the last epoch (default %(default)s)",
    )
    parser.add_argument(
        "--w0",
        type=float,
        default=defaults.w0,
        help="U-Net weight map amplitude w0 (default %(default)s)",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=defaults.sigma,
        help="U-Net weight map width sigma, XY pixels (default %(default)s)",
    )
    parser.add_argument(
        "--edge-multiplier",
        type=float,
        default=defaults.edge_multiplier,
        help="extra weight of boundary voxels (default %(default)s)",
    )
    parser.add_argument(
        "--map-multiplier",
        type=float,
        default=defaults.map_multiplier,
        help="factor of the weight map on boundary voxels (default %(default)s)",
    )
    parser.add_argument(
        "--boundary-mode",
        choices=BOUNDARY_MODES,
        default=defaults.boundary_mode,
        help="boundary target: anisotropic (both sides in-plane, the lower side between "
        "planes), anisotropic-symmetric (both sides in-plane, 0.5 on both sides between "
        "planes) or skimage find_boundaries modes (default %(default)s)",
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        choices=(1, 2, 3),
        default=defaults.boundary_connectivity,
        help="neighbourhood of the thick/inner/outer boundary targets (default %(default)s)",
    )
    parser.add_argument(
        "--invert-weights",
        action="store_true",
        help="invert boundary weights (cell-background faces weigh most)",
    )
    parser.add_argument(
        "--keep-background-patches",
        action="store_true",
        help="do not redraw patches that are almost all background",
    )
    parser.add_argument(
        "--padding",
        choices=("reflect", "edge"),
        default=defaults.padding,
        help="fill for patch parts outside a stack; edge matches inference, which edge-pads "
        "stacks with fewer planes than its window (default %(default)s)",
    )
    parser.add_argument(
        "--z-margin",
        type=int,
        default=defaults.z_margin,
        metavar="PLANES",
        help="random patches may reach this many planes past a stack's first or last plane, "
        "so that edge planes are also learnt away from the patch border (default %(default)s)",
    )
    parser.add_argument("--no-augment", action="store_true", help="disable augmentation")
    parser.add_argument(
        "--single-channel-fraction",
        type=float,
        default=defaults.single_channel_fraction,
        metavar="F",
        help="fraction of training patches whose image is one of its channels copied into "
        "both inputs, as for a single-channel stack, so that the model also segments from "
        "either channel alone (default %(default)s)",
    )
    parser.add_argument("--name", default=defaults.name, help="model name for the model card")
    parser.set_defaults(handler=_run_train)


def _run_train(arguments: argparse.Namespace) -> int:
    from segmentation.training.trainer import TrainingConfig, train

    config = TrainingConfig(
        epochs=arguments.epochs,
        patch=arguments.patch,
        batch_size=arguments.batch,
        learning_rate=arguments.lr,
        device=arguments.device,
        bf16=arguments.bf16,
        seed=arguments.seed,
        patches_per_epoch=arguments.patches_per_epoch,
        f_maps=arguments.f_maps,
        early_stopping_patience=arguments.patience,
        scheduler_patience=arguments.lr_patience,
        lr_schedule=arguments.lr_schedule,
        w0=arguments.w0,
        sigma=arguments.sigma,
        edge_multiplier=arguments.edge_multiplier,
        map_multiplier=arguments.map_multiplier,
        invert_weights=arguments.invert_weights,
        boundary_mode=arguments.boundary_mode,
        boundary_connectivity=arguments.connectivity,
        max_background_fraction=(
            None if arguments.keep_background_patches else TrainingConfig.max_background_fraction
        ),
        padding=arguments.padding,
        z_margin=arguments.z_margin,
        augment=not arguments.no_augment,
        single_channel_fraction=arguments.single_channel_fraction,
        name=arguments.name,
    )
    try:
        summary = train(
            arguments.data,
            arguments.out,
            config,
            init=arguments.init,
            resume=arguments.resume,
            command=" ".join(["germseg", *sys.argv[1:]]),
        )
    except GermsegError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    print(
        f"best validation loss {summary.best_val_loss:.4f} at epoch {summary.best_epoch}; "
        f"checkpoints in {arguments.out}",
        file=sys.stderr,
    )
    return 0


def _add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the web app and REST API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--weights", type=Path, default=None, metavar="PATH")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=DEFAULT_DEVICE)
    parser.add_argument("--results-dir", type=Path, default=None, metavar="DIR")
    parser.set_defaults(handler=_run_serve)


def check_results_dir(path: Path) -> None:
    """Create the server's results folder if needed and check that it can be written to.

    Raises
    ------
    InputError
        When it cannot be created (it is a file, or lies under one) or written to, with
        the reason.
    """
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(0, "it is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise InputError(
            f"results directory {path} cannot be used ({error.strerror or error}); give "
            "--results-dir (or GERMSEG_RESULTS_DIR) a folder that can be created and written to"
        ) from error


def _run_serve(arguments: argparse.Namespace) -> int:
    try:
        from app.server import serve
        from app.settings import Settings
    except ImportError as error:
        _error(f"the web app needs its extra dependencies ({error}): pip install 'germseg[app]'")
        return EXIT_BAD_INPUT
    try:
        settings = Settings.from_environment(results_dir=arguments.results_dir)
        check_results_dir(settings.results_dir)
        check_max_voxels(settings.max_voxels)
        serve(
            arguments.host,
            arguments.port,
            weights=arguments.weights,
            device=arguments.device,
            results_dir=arguments.results_dir,
        )
    except GermsegError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``germseg`` command."""
    parser = argparse.ArgumentParser(
        prog="germseg", description="3D cell segmentation of C. elegans germline stacks."
    )
    parser.add_argument("--version", action="version", version=f"germseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_segment_parser(subparsers)
    _add_synth_parser(subparsers)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_serve_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``germseg`` and ``python -m segmentation``."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(arguments.handler(arguments))
