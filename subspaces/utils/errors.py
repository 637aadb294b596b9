"""The one exception type for bad input.

Library code raises :class:`UserError` with a one-line message that names the fix; the command
line entry points turn it into that line on stderr and a non-zero exit, with no traceback.
Library code never calls ``exit()``.
"""
from __future__ import annotations

from typing import Callable


class UserError(Exception):
    """Bad input from the user (flags, data folders, checkpoints): the message names the fix."""


class Diverged(UserError):
    """Training became NaN or infinite (the loss, or the weights about to be checkpointed): the run
    stops without saving the bad weights; the command line adds the newest good checkpoint."""


def unknown_name(kind: str, name: str, valid: "list[str] | tuple[str, ...]", flag: str = "") -> UserError:
    """Build the error for a registry lookup that failed, listing the valid names."""
    where = f" ({flag})" if flag else ""
    return UserError(f"unknown {kind} {name!r}{where}; choose one of: {', '.join(sorted(valid))}")


def exit_status(command: Callable[[], str]) -> int:
    """Run a command line's ``command``: print the line it returns and give 0, or print its
    UserError as the one line ``error: ...`` on stderr and give 2 (no traceback)."""
    import sys

    try:
        message = command()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(message)
    return 0
