"""Pipeline steps: one module each, one entry function each."""
