"""tvm_mpq.frontend."""
