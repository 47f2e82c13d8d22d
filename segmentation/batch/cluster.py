"""A batch on a Dask cluster: one task per stack, the model loaded once per worker.

Needs ``distributed``; the in-process default (:func:`segmentation.batch.run_in_process`)
does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

from distributed import Client, LocalCluster, Worker, WorkerPlugin, as_completed, get_worker

from segmentation.batch.stacks import StackJob
from segmentation.batch.task import BatchOptions, StackOutcome, failure_message, segment_stack
from segmentation.errors import GermsegError, InputError, WeightsError
from segmentation.model import LoadedModel, load_model

#: Seconds to wait for a running scheduler to answer.
CONNECT_TIMEOUT_S = 30


class ModelPlugin(WorkerPlugin):
    """Loads the model once on each worker: when the plugin is registered, and on workers
    that join later as they start.

    Parameters
    ----------
    weights : Path or None
        Checkpoint with its model card, as the workers see it; None for the bundled model.
    device : str
        Where the workers run the network (``"auto"`` picks each worker's GPU if it has one).
    """

    def __init__(self, weights: Path | None, device: str) -> None:
        self.weights = weights
        self.device = device
        self.model: LoadedModel | None = None
        self.error: str | None = None

    @property
    def name(self) -> str:
        """The plugin's name on the workers: one per weights and device."""
        return f"germseg-model:{self.weights or 'bundled'}:{self.device}"

    def setup(self, worker: object) -> None:
        """Load the model; a checkpoint that cannot be used leaves its message in ``error``
        (for :func:`run_on_cluster` to report, without a traceback in the worker's log)."""
        try:
            self.model = load_model(self.weights, device=self.device)
        except GermsegError as error:
            self.error = str(error)

    def loaded_model(self) -> LoadedModel:
        """The worker's model, loaded now if the setup did not load it.

        Raises
        ------
        segmentation.errors.WeightsError
            When it cannot be loaded.
        """
        if self.model is None:
            self.model = load_model(self.weights, device=self.device)
        return self.model


def _model_error(plugin_name: str, dask_worker: Worker) -> str | None:
    """Why this worker could not load the model of the plugin ``plugin_name``, if it could
    not (run on every worker by :meth:`distributed.Client.run`)."""
    return dask_worker.plugins[plugin_name].error


def _segment_on_worker(
    plugin_name: str, job: StackJob, out_dir: Path, options: BatchOptions
) -> StackOutcome:
    """The task of one stack: segment it with the worker's model, write its outputs."""
    try:
        model = get_worker().plugins[plugin_name].loaded_model()
    except Exception as error:
        return StackOutcome(job, "failed", error=failure_message(error))
    return segment_stack(job, out_dir, model, options)


def check_cluster_options(scheduler: str | None, workers: int | None) -> None:
    """Refuse ``workers`` below 1, or a scheduler address and a worker count together.

    Raises
    ------
    segmentation.errors.InputError
        With what to give instead.
    """
    if scheduler is not None and workers is not None:
        raise InputError(
            "give --scheduler ADDRESS (a running cluster) or --workers N (a local one), "
            "not both"
        )
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be 1 or more, got {workers}")


@contextlib.contextmanager
def batch_client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A Dask client: of the running scheduler at ``scheduler``, else of a local cluster of
    ``workers`` single-threaded worker processes, closed on exit.

    Raises
    ------
    segmentation.errors.InputError
        When the options clash (:func:`check_cluster_options`), neither is given, or the
        scheduler cannot be reached.
    """
    check_cluster_options(scheduler, workers)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(
                f"cannot reach the Dask scheduler at {scheduler} ({error}): start it "
                "(dask scheduler, or a dask-jobqueue cluster) or check the address"
            ) from error
        with client:
            yield client
        return
    if workers is None:
        raise InputError("give --scheduler ADDRESS or --workers N to run on a Dask cluster")
    # the scheduler's web server (the dashboard, with bokeh) on any free port
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_on_cluster(
    client: Client,
    jobs: Sequence[StackJob],
    out_dir: Path,
    options: BatchOptions,
    weights: Path | None,
) -> Iterator[StackOutcome]:
    """Segment ``jobs`` on the cluster of ``client``, one task per stack, yielding each
    stack's outcome as it finishes (its outputs are written by then).

    Every worker loads the model once (:class:`ModelPlugin`); the workers must see
    ``weights``, the stacks and ``out_dir`` at the same paths as this process (relative
    paths are made absolute here, since workers may run in other folders).

    Raises
    ------
    segmentation.errors.WeightsError
        When a worker cannot load the model (checked before any task; a worker that joins
        later and cannot load it fails its stacks instead).
    """
    plugin = ModelPlugin(
        None if weights is None else weights.absolute(), options.inference_parameters.device
    )
    client.register_plugin(plugin, name=plugin.name)
    errors = [error for error in client.run(_model_error, plugin.name).values() if error]
    if errors:
        raise WeightsError(errors[0])
    futures = {
        client.submit(
            _segment_on_worker,
            plugin.name,
            StackJob(job.path.absolute(), job.stem),
            out_dir.absolute(),
            options,
            pure=False,
        ): job
        for job in jobs
    }
    for future in as_completed(futures):
        job = futures[future]
        try:
            outcome = dataclasses.replace(future.result(), job=job)
        except Exception as error:  # the worker died or the task could not run
            outcome = StackOutcome(job, "failed", error=failure_message(error))
        future.release()
        yield outcome
