"""A tiny application found by ``scan=["tests.config.scanned_app"]``."""
