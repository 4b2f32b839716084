"""tvm_mpq.passes."""
