"""tvm-mpq: memory-driven mixed low-precision (8/4/2-bit) deployment of deep networks on
Cortex-M7 microcontrollers, on Apache TVM."""

__version__ = "0.2.0"
