"""Errors of the KMAP stack.

One root, :class:`KmapInputError` (a :class:`ValueError`), for every input that dass refuses
before handing it to xsocs. Its message names the file, the entry and the field, says what is
wrong and what to do about it; the same parts are kept as attributes so a service can answer
them as JSON without parsing the text.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DassError


class KmapInputError(DassError, ValueError, status=422):
    """A KMAP input (master file, entry, field, parameter) that cannot be processed.

    Parameters
    ----------
    message
        What is wrong and what to fix.
    file
        The file concerned, if any.
    entry
        The HDF5 entry (for example ``"1.1"``), if any.
    field
        The field inside the entry (for example ``"measurement/imgnr"``) or the parameter name.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        entry: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.entry = entry
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(f"file {self.file!r}")
        if entry is not None:
            where.append(f"entry {entry!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class KmapProcessingError(DassError, RuntimeError):
    """xsocs accepted the input but its conversion or fit did not finish (status not DONE).

    The message carries xsocs' own status message; ``file`` names the input processed.
    """

    def __init__(self, message: str, *, file: str | Path | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.reason = message
        super().__init__((f"file {self.file!r}: " if self.file else "") + message)
