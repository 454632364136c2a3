#!/usr/bin/env python3
"""Unpack the published reference cases (.npz) into one folder of .npy files
per case, a format the C++ tests read without zlib."""
import sys
from pathlib import Path

import numpy as np


def main(src: str, dst: str) -> None:
    for npz in sorted(Path(src).glob("*.npz")):
        out = Path(dst) / npz.stem
        out.mkdir(parents=True, exist_ok=True)
        with np.load(npz) as arrays:
            for key in arrays.files:
                np.save(out / f"{key}.npy", np.ascontiguousarray(arrays[key]))


if __name__ == "__main__":
    main(*sys.argv[1:3])
