"""regfw: run small PyTorch experiments composed from plugins, and compare them in MLflow.

Plugins write ``from regfw import hookimpl``. This module stays import-light on purpose:
``regfw --help``, ``regfw list`` and ``regfw plugins`` must not pay for torch or mlflow.
"""

from regfw.hookspecs import hookimpl
from regfw.params import Param
from regfw.errors import RegfwError
from regfw.data import Data  # torch stays unimported: Data names torch only for type checkers
from regfw.protocols import HasFeatureBasis, HasFormulaGrad, ReportsLearnedParameters, RunView

__version__ = "0.1.0"
__all__ = ["hookimpl", "Param", "RegfwError", "Data", "RunView", "ReportsLearnedParameters", "HasFeatureBasis",
           "HasFormulaGrad", "__version__"]
