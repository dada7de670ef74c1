"""Configuration, scanning and bootstrap."""
