"""Field types that keep bad text out of PostgreSQL with a 422 instead of a 500.

PostgreSQL text and jsonb cannot hold NUL characters, and unbounded strings are
a memory problem; both are refused at the edge, naming the field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints


def _no_control(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _single_line(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


# Free text (newlines allowed), without NUL, within a length range.
Title = Annotated[str, StringConstraints(min_length=1, max_length=300), AfterValidator(_no_control)]
LongText = Annotated[str, StringConstraints(max_length=20000), AfterValidator(_no_control)]
Comment = Annotated[
    str, StringConstraints(min_length=1, max_length=20000), AfterValidator(_no_control)
]
Note = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_no_control)]
# A signal stream's description: the column holds at most 2,000 characters.
ShortText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_control)]
# A name a client gives us to look up (a username, an API key id): without NUL, which
# PostgreSQL text cannot hold (the lookup would fail, a 500, instead of finding nothing).
LookupName = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_control)
]
# A one-line name (service, team, owner): trimmed, no control characters.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(_single_line),
]
# A notification destination's name: the column holds 1-100 characters.
ShortName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True),
    AfterValidator(_single_line),
]

LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,127}$")]
LabelValue = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_no_control)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=64)]
