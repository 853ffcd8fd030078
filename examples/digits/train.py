"""Train the digits example and save digits.keras and digits.npz next to this script (nothing is downloaded)."""

from pathlib import Path

from tinyflow.examples import EXAMPLES

if __name__ == "__main__":
    model, data = EXAMPLES["digits"](Path(__file__).parent)
    print(f"tinyflow deploy {model} --data {data} --board esp32s3")
