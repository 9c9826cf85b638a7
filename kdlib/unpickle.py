"""Reading pickles that come from elsewhere without running their code.

A pickle names the functions that rebuild its objects, and `pickle.load` calls whatever it names:
a tampered file runs any code it likes. Two kinds of pickles reach kdlib from elsewhere: the official
CIFAR-100 python files (kdlib.sources) and the original authors' checkpoints (kdlib.authors). Each is
read by `restricted_load`, which resolves only the globals its caller allows, each to a function the
caller chose, and refuses anything else with an error naming it. The files are checked by checksum
before they reach here; this is the second line.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Mapping


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global its reader does not allow."""


class _Restricted(pickle.Unpickler):
    def __init__(self, file, allowed: Mapping[tuple[str, str], Callable], what: str, **kwargs):
        super().__init__(file, **kwargs)
        self.allowed, self.what = allowed, what

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in self.allowed))
            raise ForbiddenGlobalError(f"{self.what} asks for {module}.{name}, which is not allowed (allowed: "
                                       f"{allowed}); it is not loaded: it may be damaged or tampered with") from None

    def persistent_load(self, pid):
        raise ForbiddenGlobalError(f"{self.what} holds a persistent id ({pid!r}); none is allowed")


def restricted_load(data: bytes, allowed: Mapping[tuple[str, str], Callable], what: str, **kwargs):
    """The object pickled in `data`, rebuilt with the globals of `allowed` only ((module, name) -> the
    callable to use for it). `what` names the file in errors; `kwargs` go to pickle.Unpickler (e.g.
    encoding="latin1" for Python 2 pickles)."""
    return _Restricted(io.BytesIO(data), allowed, what, **kwargs).load()
