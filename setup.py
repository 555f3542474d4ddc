"""Build: the Python package, plus the C++ extension (CPU always, CUDA when torch has CUDA)."""

from setuptools import setup

setup()
