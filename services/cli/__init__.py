"""The `clicktrack` command line."""
