"""dass.kmap: the science of the KMAP stack (X-SOCS-style fast-scanning nano-diffraction).

Built on `xsocs <https://pypi.org/project/xsocs/>`_ (ESRF): dass checks the input, then either
hands it to xsocs' own converters (``QSpaceConverter``, ``PeakFitter``, ``KmapSpecParser`` +
``KmapMerger``, ``make_xsocs_links``), or runs the same arithmetic in one faster pass
(:mod:`dass.kmap.fast`, engine "dass", identical numbers), or fits a 3-D peak to the pixels
(:mod:`dass.kmap.direct`, engine "direct", beyond xsocs' binned method). A synthetic generator
(:mod:`dass.kmap.synthetic`) writes the exact xsocs input layout with a known strain and tilt
field, so every step can be checked against ground truth.

``import dass.kmap`` stays light: xsocs, xrayutilities and h5py are imported inside the
functions that need them.

    from dass.kmap import synthetic, qspace, fit
    master, truth = synthetic.generate("scan", shape=(10, 10))
    qspace.convert(master, "scan/qspace.h5", grid=(40, 40, 40))
    result = fit.fit("scan/qspace.h5", "scan/fit.h5", method="gaussian")

    from dass.kmap.fast import convert_fit        # the same numbers, one pass
    result = convert_fit(master, "scan/qspace.h5", "scan/fit.h5", grid=(40, 40, 40))
"""

from __future__ import annotations

from .errors import KmapInputError, KmapProcessingError

__all__ = ["KmapInputError", "KmapProcessingError"]
