"""tvm_mpq.data: data sets that install without internet (see docs/quantization.md)."""

from .fashion_mnist import (
    DATA_DIR,
    NUM_CLASSES,
    load_dataset,
    load_fashion_mnist,
    pixels_to_input,
    to_model_input,
)

__all__ = ["DATA_DIR", "NUM_CLASSES", "load_dataset", "load_fashion_mnist", "pixels_to_input",
           "to_model_input"]
