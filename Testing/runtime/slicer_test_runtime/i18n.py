"""``slicer.i18n`` of the runtime: ``tr`` and ``translate`` as scripted modules import them.

Texts go through ``slicer.app.translate`` with the caller's context (the source file's name, as in Slicer); with no
translation installed they come back unchanged, which is what Slicer does for English.
"""

from __future__ import annotations

import os
import sys

__all__ = ["tr", "translate", "getContext"]


def translate(context: str, text: str) -> str:
    """Translate ``text`` in ``context`` to the application language."""
    import slicer

    app = getattr(slicer, "app", None)
    return app.translate(context, text) if app is not None else text


def getContext(sourceFile: str) -> str:
    """Translation context of a source file: ``Package.File`` inside a package, else the file's stem."""
    stem = os.path.splitext(os.path.basename(sourceFile))[0]
    folder = os.path.dirname(sourceFile)
    if os.path.isfile(os.path.join(folder, "__init__.py")):
        return f"{os.path.basename(folder)}.{stem}"
    return stem


def tr(text: str) -> str:
    """Translate ``text`` in the context of the calling file (usually imported as ``_``)."""
    return translate(getContext(sys._getframe(1).f_code.co_filename), text)
