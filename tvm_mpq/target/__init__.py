"""tvm_mpq.target."""
