"""tvm_mpq.memory."""
