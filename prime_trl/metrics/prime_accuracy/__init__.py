"""The `prime_accuracy` metric; `evaluate.load(<this directory>)` runs `prime_accuracy.py`."""
