"""tvm_mpq.quant."""
