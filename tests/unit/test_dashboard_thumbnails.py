"""pvhpc.dashboard.thumbnails.downscale: block means, value ranges, colour."""

from __future__ import annotations

import numpy as np
import pytest

from pvhpc.dashboard.thumbnails import (
    MAX_CHANNELS,
    MAX_SIDE,
    MIN_PERIOD,
    Thumbnails,
    _png,
    downscale,
)


def test_uint8_frame_becomes_its_block_means():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (241, 330), dtype=np.uint8)  # edges fill no whole block
    small, value_range, factor = downscale(image)
    assert factor == 3 and small.shape == (80, 110) and small.dtype == np.uint8
    assert value_range == (0, 255)
    block = image[3:6, 6:9].astype(float).mean()
    assert small[1, 2] == int(np.rint(block))


def test_small_frame_is_left_as_it_is():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    small, _, factor = downscale(image)
    assert factor == 1 and np.array_equal(small, image)


def test_other_types_are_mapped_onto_0_255():
    image = np.linspace(-1.0, 3.0, 400 * 10).reshape(10, 400)
    small, (lo, hi), factor = downscale(image)
    assert factor == 3 and max(small.shape) <= MAX_SIDE
    assert small.min() == 0 and small.max() == 255 and lo < hi
    flat, (lo, hi), _ = downscale(np.full((4, 4), 7, dtype=np.uint16))
    assert lo == hi == 7 and not flat.any()


def test_colour_frames_keep_their_channels():
    image = np.zeros((320, 320, 3), dtype=np.uint8)
    image[..., 1] = 200
    small, _, factor = downscale(image)
    assert factor == 2 and small.shape == (160, 160, 3)
    assert (small[..., 1] == 200).all() and not small[..., 0].any()
    assert _png(small).startswith(b"\x89PNG")


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5,)])
def test_not_an_image(shape):
    with pytest.raises(ValueError):
        downscale(np.zeros(shape, dtype=np.uint8))


def test_channels_fetched_are_bounded_shown_first():
    shown = {f"shown:{i}" for i in range(5)}
    thumbs = Thumbnails(lambda: shown, period=0.1)
    assert thumbs.period == MIN_PERIOD
    for i in range(10):
        thumbs.ask(f"asked:{i}")
    due = thumbs._due()
    assert len(due) == MAX_CHANNELS and set(due) >= shown
