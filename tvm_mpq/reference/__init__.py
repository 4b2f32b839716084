"""tvm_mpq.reference."""
