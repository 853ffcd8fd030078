"""Stage 6: flash a board and measure it over tinyflow's serial protocol, or measure the simulated board.

Takes a firmware folder (flash) or a port and the model (measure); returns a ``FlashResult`` or a
``Measurement`` (latency, per-op time, accuracy and bit-exactness against the host TFLM, labelled
"simulated" when it comes from the simulated board).
"""

from .flashing import FlashResult, flash, remote_flash_refusal
from .harness import Measurement, measure, measure_on
from .ports import find_port, is_url, open_port, parse_port_url
from .simulator import SimProcess, serve

__all__ = ["FlashResult", "Measurement", "SimProcess", "find_port", "flash", "is_url", "measure", "measure_on",
           "open_port", "parse_port_url", "remote_flash_refusal", "serve"]
