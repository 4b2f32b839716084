"""tvm_mpq.commands."""
