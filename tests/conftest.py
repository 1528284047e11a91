import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py, the NumPy oracles
# weights/torch_reference*.py: the independent PyTorch references with the publishers' key
# names, shared by the parity tests and the release pipeline (weights/release.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "weights"))
