"""Functions that end-to-end tests run in real worker processes."""
