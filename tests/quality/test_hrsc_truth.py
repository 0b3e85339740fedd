"""HRSC2016's ground truth as crops, and the reader keeping only segmented images."""

from __future__ import annotations

import numpy as np

from samrs.classes import subset_classes
from samrs.sources.hrsc2016 import Hrsc2016Source


def test_crops_are_the_masks_cut_to_each_ship(hrsc_source, hrsc_scenes):
    items = hrsc_source.items(print)
    assert items
    for item in items:
        record = hrsc_source.read(item, print)
        crops = hrsc_source.instance_crops(record)
        for crop, mask, drawn in zip(crops, hrsc_source.instance_masks(record), hrsc_scenes[item.name].objects):
            np.testing.assert_array_equal(crop.full(record.height, record.width), drawn.mask)
            np.testing.assert_array_equal(mask, drawn.mask)
            assert crop.mask.shape == tuple(np.ptp(np.argwhere(drawn.mask), axis=0) + 1)  # cut to the ship


def test_segmented_only(hrsc_root):
    classes = subset_classes("hrsc2016")
    everything = Hrsc2016Source(hrsc_root, classes, split=None).items(print)
    segmented = Hrsc2016Source(hrsc_root, classes, split=None, segmented_only=True).items(print)
    assert len(everything) == 8
    assert [i.name for i in segmented] == [i.name for i in Hrsc2016Source(hrsc_root, classes, split="test").items(print)]
    for item in everything:  # an image without segmentation: no ship has a mask
        record = Hrsc2016Source(hrsc_root, classes, split=None).read(item, print)
        if item not in segmented:
            assert Hrsc2016Source(hrsc_root, classes).instance_crops(record) == [None] * len(record.objects)
