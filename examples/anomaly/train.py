"""Train the anomaly example and save anomaly.keras and anomaly.npz next to this script (nothing is downloaded)."""

from pathlib import Path

from tinyflow.examples import EXAMPLES

if __name__ == "__main__":
    model, data = EXAMPLES["anomaly"](Path(__file__).parent)
    print(f"tinyflow deploy {model} --data {data} --board esp32s3")
