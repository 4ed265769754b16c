"""Super-resolution methods behind one interface, found by name.

A method maps an LR target (3, h, w) and an HR reference (3, h*scale, w*scale), both float32 in [0, 1], to an SR image
(3, h*scale, w*scale). ``prepare(ref)`` runs once per reference image (a light field's reference view, a video frame)
and returns what every target of that reference reuses, so reference features are never computed once per view.
"""

from __future__ import annotations

from lfrefsr.methods import bicubic, flowwarp, patchmatch, refsr, refsr_paper, sisr  # noqa: F401  (registration)
from lfrefsr.methods.base import (  # noqa: F401
    Method,
    ViewHint,
    available,
    get_method,
    method_class,
    network_names,
    register,
    typed_options,
)
