"""Time the post-network stages on a full-size (25 x 1024 x 1024) synthetic boundary map.

The boundary map is a blurred, noisy map of the faces of a Voronoi tessellation (about
400 cells, Z step 4x the XY pixel) with background above and below a band in Y.

Run: ``python benchmarks/bench_postnetwork.py [--shape 25 1024 1024] [--cells 400]``
"""

from __future__ import annotations

import argparse
import resource
import time

import bioimage_cpp.distance
import bioimage_cpp.filters
import numpy as np
from skimage.segmentation import find_boundaries

from segmentation.graph import agglomerate, multicut, project_node_labels, region_graph
from segmentation.parameters import DEFAULT_CUTOFF, DEFAULT_FOOTPRINT, DEFAULT_THRESHOLD
from segmentation.postprocess import filter_by_size, relabel_sequential, remove_background
from segmentation.watershed import distance_transform_watershed

VOXEL_SIZE = (0.8, 0.2, 0.2)


def voronoi_labels(shape: tuple[int, int, int], n_cells: int, seed: int) -> np.ndarray:
    """Voronoi cells of random seeds (anisotropic distance), 0 outside a band in Y."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape, dtype=bool)
    coordinates = [rng.integers(0, size, n_cells) for size in shape]
    points[tuple(coordinates)] = True
    spacing = np.asarray(VOXEL_SIZE) / VOXEL_SIZE[-1]
    _, indices = bioimage_cpp.distance.distance_transform(
        ~points, sampling=tuple(spacing), return_indices=True, number_of_threads=0
    )
    seed_ids = np.zeros(shape, dtype=np.uint32)
    seed_ids[points] = np.arange(1, int(points.sum()) + 1)
    labels = seed_ids[indices[0], indices[1], indices[2]]
    band = shape[1] // 8
    labels[:, :band] = 0
    labels[:, -band:] = 0
    return labels


def boundary_map(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blurred, noisy boundary probability and foreground probability of ``labels``."""
    boundary = find_boundaries(labels, connectivity=1, mode="thick")
    sigma = (0.5, 1.5, 1.5)
    probability = bioimage_cpp.filters.gaussian_smoothing(boundary.astype(np.float32), sigma)
    probability *= 0.9 / max(float(np.median(probability[boundary])), 1e-6)
    rng = np.random.default_rng(seed)
    probability += rng.normal(0.0, 0.05, labels.shape).astype(np.float32)
    np.clip(probability, 0.0, 1.0, out=probability)
    foreground = bioimage_cpp.filters.gaussian_smoothing((labels > 0).astype(np.float32), sigma)
    return probability, foreground


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=3, default=(25, 1024, 1024))
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    labels = voronoi_labels(tuple(arguments.shape), arguments.cells, arguments.seed)
    boundary, foreground = boundary_map(labels, arguments.seed)
    del labels
    print(f"input {boundary.shape}, peak RSS after synthesis {peak_rss_gib():.2f} GiB")

    timings: dict[str, float] = {}

    def timed(name, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        timings[name] = time.perf_counter() - start
        return result

    superpixels = timed(
        "distance_transform_watershed",
        distance_transform_watershed,
        boundary,
        threshold=DEFAULT_THRESHOLD,
        footprint=DEFAULT_FOOTPRINT,
        voxel_size=VOXEL_SIZE,
    )
    graph = timed("region_graph", region_graph, superpixels, boundary, foreground)
    node_labels = timed("agglomerate", agglomerate, graph, DEFAULT_CUTOFF)
    timed("multicut (kernighan-lin)", multicut, graph, DEFAULT_CUTOFF)
    timed("multicut (greedy-additive)", multicut, graph, DEFAULT_CUTOFF, solver="greedy-additive")
    cells = timed("project_node_labels", project_node_labels, superpixels, node_labels)
    cells = timed("remove_background", remove_background, cells, foreground)
    cells = timed("filter_by_size", filter_by_size, cells)
    cells = timed("relabel_sequential", relabel_sequential, cells)

    print(
        f"super-pixels {graph.n_nodes - 1}, edges {graph.n_edges}, "
        f"cells {int(node_labels.max())} -> {int(cells.max())} after post-processing"
    )
    for name, seconds in timings.items():
        print(f"{name:32s} {seconds:8.3f} s")
    print(
        f"{'watershed + region_graph':32s} "
        f"{timings['distance_transform_watershed'] + timings['region_graph']:8.3f} s"
    )
    print(f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
