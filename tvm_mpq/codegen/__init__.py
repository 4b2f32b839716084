"""tvm_mpq.codegen."""
