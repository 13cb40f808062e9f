"""tinyadapt: on-device learning for microcontrollers.

Runs unchanged on MicroPython (kernels from the `_tinyadapt` native module) and on
CPython (kernels from host_sim's numpy `_tinyadapt`, bit-exact with the C).
"""
import _tinyadapt

from .layers import Dense
from .model import Model, UnsupportedModel
from .tam import TamError, load

__version__ = "0.1.0"
KERNEL_ABI = 2

if getattr(_tinyadapt, "ABI", None) != KERNEL_ABI:
    raise ImportError("tinyadapt needs _tinyadapt ABI %d, found %r: rebuild or redeploy the natmod"
                      % (KERNEL_ABI, getattr(_tinyadapt, "ABI", None)))

__all__ = ["Dense", "Model", "UnsupportedModel", "TamError", "load", "KERNEL_ABI",
           "__version__"]
