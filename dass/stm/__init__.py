"""dass.stm: the science of the STM stack, as plain tested functions.

Built on `pyfastspm <https://pypi.org/project/pyfastspm/>`_ (FAST module movies): dass validates
a file, then hands it to pyfastspm and never changes pyfastspm's numbers.

Still images: Nanonis ``.sxm``/``.dat`` through `nanonispy2`_ (:mod:`dass.stm.nanonis`), Omicron
MATRIX through `access2theMatrix`_ (:mod:`dass.stm.matrix`), corrections on
:class:`~dass.stm.still.StillImage` (:mod:`dass.stm.still`), the sample-preparation logbook
(:mod:`dass.stm.logbook`, format in ``docs/stm-logbook.md``).

.. _nanonispy2: https://pypi.org/project/nanonispy2/
.. _access2theMatrix: https://pypi.org/project/access2theMatrix/

``import dass.stm`` stays light: pyfastspm (which configures logging and prints on import) is
imported on first use, inside the functions that need it.

    from dass.stm import open_fast
    with open_fast("20141003_24.h5") as movie:
        movie.metadata["points_x"], movie.frames("udf").shape
"""

from __future__ import annotations

from .errors import LogbookError, MatrixFileError, NanonisFileError, StepError, StmFileError
from .fast import CHANNELS, FastFile, FastFileError, open_fast
from .logbook import attach_preparation, match_preparation, read_logbook, write_preparation_h5
from .matrix import open_matrix, read_matrix
from .nanonis import open_dat, open_sxm, read_sxm
from .process import ProcessedMovie, ProcessingError, Recipe, RecipeError, process
from .still import StillImage, align_rows, apply, fft_notch, fix_zero, plane_fit

__all__ = [
    "CHANNELS", "FastFile", "FastFileError", "open_fast",
    # FAST movie processing through pyfastspm (exports: dass.stm.export, job: dass.stm.service)
    "Recipe", "RecipeError", "ProcessedMovie", "ProcessingError", "process",
    # still images (Nanonis, MATRIX), their corrections, the preparation logbook
    "StmFileError", "NanonisFileError", "MatrixFileError", "LogbookError", "StepError",
    "StillImage", "open_sxm", "read_sxm", "open_dat", "open_matrix", "read_matrix",
    "plane_fit", "align_rows", "fix_zero", "fft_notch", "apply",
    "read_logbook", "match_preparation", "attach_preparation", "write_preparation_h5",
]
