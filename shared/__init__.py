"""Code shared by the Clicktrack services: settings, the click event, and store helpers."""
