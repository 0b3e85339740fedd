"""A labeler that is a torch module, as SAM is: the label job runs it in a Lightning predict loop,
whose DataLoader workers read ahead (importable by name in the fault tests' subprocesses)."""

from __future__ import annotations

import time

from torch import nn

from samrs.labeling.fill import PolygonFillLabeler


class ModuleFillLabeler(nn.Module):
    """polygon_fill as an nn.Module that takes `delay` seconds per batch."""

    name = "polygon_fill"

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.fill = PolygonFillLabeler()

    def label(self, images, records):
        time.sleep(self.delay)
        return self.fill.label(images, records)
