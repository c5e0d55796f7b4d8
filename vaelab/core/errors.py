"""The one error type for problems a user can fix (the stages print it as one line: see
:func:`vaelab.core.cli.run_cli`)."""

from __future__ import annotations


class VaelabError(Exception):
    """A problem with the user's input or environment: bad params, a corrupt archive,
    a checksum mismatch, missing weights. The message names the problem and the fix."""
