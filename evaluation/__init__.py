"""Classifier-based evaluation of real and synthetic mammograms: MobileNetV2 transfer learning,
metrics, seed repeats, grids, realism and memorisation checks.

Submodules are imported one by one (`evaluation.metrics`, `evaluation.classifier`, ...) so that
commands which only need metrics or reports never load TensorFlow.
"""
