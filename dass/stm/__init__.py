"""dass.stm: the science of the STM stack, as plain tested functions.

Built on `pyfastspm <https://pypi.org/project/pyfastspm/>`_ (FAST module movies): dass validates
a file, then hands it to pyfastspm and never changes pyfastspm's numbers.

``import dass.stm`` stays light: pyfastspm (which configures logging and prints on import) is
imported on first use, inside the functions that need it.

    from dass.stm import open_fast
    with open_fast("20141003_24.h5") as movie:
        movie.metadata["points_x"], movie.frames("udf").shape
"""

from __future__ import annotations

from .fast import CHANNELS, FastFile, FastFileError, open_fast

__all__ = ["CHANNELS", "FastFile", "FastFileError", "open_fast"]
