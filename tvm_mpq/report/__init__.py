"""tvm_mpq.report."""
