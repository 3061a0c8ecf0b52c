import numpy as np
import pytest
from PIL import Image

from evolens import InputError
from evolens.views import images_to_grid, save_png


def test_grid_layout_and_values():
    images = np.zeros((5, 1, 3, 4), np.float32)
    images[4] = 1.0
    grid = images_to_grid(images, ncol=3, pad=1, pad_value=0.5)
    assert grid.shape == (2 * 4 + 1, 3 * 5 + 1, 1) and grid.dtype == np.uint8
    assert grid[1:4, 1:5].max() == 0  # first image: black
    assert (grid[5:8, 6:10] == 255).all()  # fifth image: second row, second column, white
    assert grid[0, 0, 0] == 128  # padding


def test_nonfinite_pixels_are_grey_not_errors():
    images = np.full((1, 3, 2, 2), np.nan, np.float32)
    assert (images_to_grid(images, pad=0) == 128).all()


def test_save_png(tmp_path):
    path = save_png(images_to_grid(np.random.rand(4, 3, 5, 5)), tmp_path / "g.png", scale=2)
    with Image.open(path) as image:
        assert image.size == (2 * 16, 2 * 16) and image.mode == "RGB"


def test_bad_channels():
    with pytest.raises(InputError, match="1 or 3 channels"):
        images_to_grid(np.zeros((2, 2, 4, 4)))
