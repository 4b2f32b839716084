"""tvm_mpq.models."""
