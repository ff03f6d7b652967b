"""dass.kmap: the science of the KMAP stack (X-SOCS-style fast-scanning nano-diffraction).

Built on `xsocs <https://pypi.org/project/xsocs/>`_ (ESRF): dass checks the input, then hands it
to xsocs' own converters (``QSpaceConverter``, ``PeakFitter``, ``KmapSpecParser`` +
``KmapMerger``, ``make_xsocs_links``) and never changes their numbers. A synthetic generator
(:mod:`dass.kmap.synthetic`) writes the exact xsocs input layout with a known strain and tilt
field, so every step can be checked against ground truth.

``import dass.kmap`` stays light: xsocs, xrayutilities and h5py are imported inside the
functions that need them.

    from dass.kmap import synthetic, qspace, fit
    master, truth = synthetic.generate("scan", shape=(10, 10))
    qspace.convert(master, "scan/qspace.h5", grid=(40, 40, 40))
    result = fit.fit("scan/qspace.h5", "scan/fit.h5", method="gaussian")
"""

from __future__ import annotations

from .errors import KmapInputError, KmapProcessingError

__all__ = ["KmapInputError", "KmapProcessingError"]
