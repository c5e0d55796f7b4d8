"""One error type for problems a user can fix, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import sys
from typing import Callable


class VaelabError(Exception):
    """A problem with the user's input or environment: bad params, a corrupt archive,
    a checksum mismatch, missing weights. The message names the problem and the fix."""


def run_cli(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a ``VaelabError`` becomes one line on stderr and exit status 1.

    Anything else is a bug and keeps its traceback.
    """
    try:
        main()
    except VaelabError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
