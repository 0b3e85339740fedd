"""Reading torch files (checkpoints, weights) with a one-line message for a file torch cannot read.

torch's own errors for a cut or foreign file ("failed finding central directory", "mmap can only be
used with files saved with torch.save(...)", "invalid load key") name neither the file nor the cause.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from samrs.errors import BadFileError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_MAGIC = b"\x80"  # the legacy format starts with a pickle protocol opcode


class UnreadableTorchFile(BadFileError):
    """A file torch.load cannot read; `truncated` when it is a torch file cut short."""

    def __init__(self, path: str | os.PathLike, what: str, truncated: bool) -> None:
        super().__init__(f"{path}: not a readable {what} (truncated or not a torch file)")
        self.path, self.what, self.truncated = str(path), what, truncated

    def __reduce__(self):
        return type(self), (self.path, self.what, self.truncated)


def is_truncated(path: str | os.PathLike, err: BaseException) -> bool:
    """Whether a file torch failed to read is a torch file cut short: a zip whose end (the central
    directory) is missing, or a legacy pickle that ends early."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC:
        return not zipfile.is_zipfile(path)
    return head[:1] == PICKLE_MAGIC and (isinstance(err, EOFError) or "truncated" in str(err))


def read_torch_file(path: str | os.PathLike, what: str, **load_kwargs: Any) -> Any:
    """torch.load(path) onto the CPU; UnreadableTorchFile naming `what` (e.g. "Lightning checkpoint")
    when the file is cut short or no torch file."""
    import torch

    try:
        return torch.load(Path(path), map_location="cpu", **load_kwargs)
    except MemoryError:
        raise
    except Exception as err:  # zip, pickle and torch errors all mean "torch cannot read this file"
        raise UnreadableTorchFile(path, what, is_truncated(path, err)) from err
