"""tvm_mpq.tune."""
