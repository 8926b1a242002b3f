"""The model-from-code script stored with every registered empdg model (``python_model=<this file>``).

MLflow runs this file to build the model when it loads it, instead of unpickling a pickled Python object:
loading a registered model runs no pickled code (the weights load with ``weights_only=True``). It is not
imported by empdg itself.
"""

from mlflow.models import set_model

from empdg.serving.pyfunc_model import EmpDGChatModel

set_model(EmpDGChatModel())
