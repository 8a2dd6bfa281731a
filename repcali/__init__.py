"""RepCali: representation calibration between encoder and decoder, and the framework around it.

The method is one short file, :mod:`repcali.calibration`. Names are imported lazily, so that
``import repcali`` does not load torch (``train.py --cfg job`` and skipped reruns stay fast).
"""

from importlib import import_module

__all__ = ["RepCaliConfig", "RepCaliError", "attach_repcali", "detach_repcali", "load_repcali", "save_repcali"]
_HOMES = {"RepCaliConfig": "repcali.config", "RepCaliError": "repcali.errors"}


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(_HOMES.get(name, "repcali.calibration")), name)
    raise AttributeError(f"module 'repcali' has no attribute {name!r}")
