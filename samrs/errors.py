"""User errors: what a user can fix (a missing or bad file, a bad value, a refused configuration).

Every job prints them as one line, `error: <message>`, and exits with status 2; the full traceback
comes only with HYDRA_FULL_ERROR=1. Any other exception is an internal error and keeps its
traceback. The classes also derive from the built-in error they refine (ValueError,
FileNotFoundError), so code that catches those keeps working.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

EXIT_STATUS = 2


class UserError(Exception):
    """A problem the user can fix; its message names the file or key and says what to do."""


class ConfigError(UserError, ValueError):
    """A bad value, or a run refused as configured (e.g. a resume with other settings)."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the configuration names is not there."""


class BadFileError(UserError, ValueError):
    """A file is there but cannot be used: unreadable, truncated, of another kind or for another model."""


def user_error_in(err: BaseException) -> UserError | None:
    """The UserError behind `err`, also when a library wrapped it (Hydra's InstantiationException
    raises `from` the error a `_target_` raised). Only explicit causes count: an error raised while
    handling a UserError is a new, internal one."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None


def one_line(err: UserError) -> str:
    """The message on one line; a DataLoader worker's error arrives with the worker's traceback
    in its text, of which only the last line is the message."""
    text = str(err)
    if "Original Traceback" in text:
        prefix = f"{type(err).__name__}: "
        last = [line for line in text.splitlines() if line.startswith(prefix)]
        text = last[-1][len(prefix):] if last else text
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def full_traceback_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_on_user_error(task: Callable[..., Any]) -> Callable[..., Any]:
    """`task`, printing a UserError as `error: <message>` on stderr and exiting with status 2
    (re-raised with HYDRA_FULL_ERROR=1, for the traceback)."""

    @functools.wraps(task)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as err:
            user_error = user_error_in(err)
            if user_error is None or full_traceback_wanted():
                raise
            print(f"error: {one_line(user_error)}", file=sys.stderr, flush=True)
            sys.exit(EXIT_STATUS)

    return guarded
