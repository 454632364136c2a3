"""rloss: regularized losses (DenseCRF) for weakly-supervised segmentation in Caffe.

The layers themselves are C++ inside Caffe; this package holds the Python
tooling around them.
"""

__version__ = "0.1.0"
