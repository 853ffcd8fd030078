"""Stage 5: TFLM firmware for a board, from Jinja templates: a PlatformIO (ESP-IDF) project and an Arduino sketch.

Takes the ``.tflite`` bytes, its ``ModelGraph`` and the ``BoardPlan``; returns a ``FirmwareProject`` (the
folders written). Every name that reaches C, INI or YAML goes through ``cnames`` first.
"""

from .project import FirmwareProject, generate, relocate, self_test_vectors, write_project

__all__ = ["FirmwareProject", "generate", "relocate", "self_test_vectors", "write_project"]
