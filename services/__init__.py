"""The Clicktrack processes: redirector, counter and the command line."""
