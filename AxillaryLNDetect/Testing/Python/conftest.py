"""Put the AxillaryLNDetect module folder on sys.path so the tests can import AxillaryLNDetectLib."""
import os
import sys

_MODULE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
if _MODULE_DIR not in sys.path:
    sys.path.insert(0, _MODULE_DIR)
