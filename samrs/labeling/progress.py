"""The label job's progress bar: source images done, images and objects written, and their rates."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class CountsColumn(ProgressColumn):
    """Images and objects written so far, and their rates over the task's elapsed time."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        parts = []
        for unit in ("images", "objects"):
            count = task.fields.get(unit, 0)
            parts.append(f"{count} {unit} {count / elapsed if elapsed > 0 else 0.0:.1f}/s")
        return Text(" · ".join(parts), style="progress.data.speed")


class LabelProgress:
    """One bar over `total` source images; `advance` after each batch, `stop` at the end."""

    def __init__(self, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]labeling"), BarColumn(bar_width=10), MofNCompleteColumn(),
            CountsColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task("labeling", total=total, images=0, objects=0)
        self._stopped = False

    def advance(self, items: int, images: int, objects: int) -> None:
        fields = self._progress.tasks[0].fields
        self._progress.update(self._task, advance=items, images=fields["images"] + images,
                              objects=fields["objects"] + objects)

    def stop(self) -> None:
        if not self._stopped:
            self._progress.stop()
            self._stopped = True
