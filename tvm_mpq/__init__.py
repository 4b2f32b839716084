"""tvm-mpq."""
