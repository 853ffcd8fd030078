"""Train the signals example and save signals.keras and signals.npz next to this script (nothing is downloaded)."""

from pathlib import Path

from tinyflow.examples import EXAMPLES

if __name__ == "__main__":
    model, data = EXAMPLES["signals"](Path(__file__).parent)
    print(f"tinyflow deploy {model} --data {data} --board esp32s3")
