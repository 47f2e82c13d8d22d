"""Write phantom training stacks and their data CSV for ``weights/train_bundled.sh``.

Usage: python weights/make_phantom_data.py OUT_DIR N_STACKS SIDE [FIRST_SEED]

Stack ``k`` uses seed ``FIRST_SEED + k`` and shape (Z, SIDE, SIDE) with Z = 20..40 as in real
stacks; seeds ending in 9 are the validation split. Seeds from 10000 are reserved for
testing and seeds from 20000 for tuning, so they must not be used here.
"""

from __future__ import annotations

import sys
from multiprocessing import Pool
from pathlib import Path

from segmentation.synthetic import write_phantom


def write_one(job: tuple[Path, int, int]) -> None:
    out, seed, side = job
    depth = 20 + (seed % 5) * 5
    if not (out / "labels.tif").is_file():
        write_phantom(out, shape=(depth, side, side), seed=seed)


def main() -> None:
    data, n_stacks, side = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if first + n_stacks > 10000:
        raise SystemExit("error: seeds from 10000 are reserved for testing; use fewer stacks")
    seeds = range(first, first + n_stacks)
    with Pool(2) as pool:
        pool.map(write_one, [(data / f"s{seed}", seed, side) for seed in seeds])
    rows = ["image,mask,split"]
    for seed in seeds:
        split = "val" if seed % 10 == 9 else "train"
        rows.append(f"s{seed}/image.tif,s{seed}/labels.tif,{split}")
    (data / "data.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
