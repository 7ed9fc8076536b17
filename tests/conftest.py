"""Shared fixtures: small synthetic datasets so training/search tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image_folder(root: Path, classes: int = 10, per_class: int = 24, size: int = 28) -> Path:
    """A learnable grayscale dataset: each class is a bright bar at its own position, plus noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            row = 2 + c * (size - 4) // classes
            img[row : row + 2, 2:-2] = 230
            Image.fromarray(img, mode="L").save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("tiny_images"))
