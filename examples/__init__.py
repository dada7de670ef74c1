"""Runnable example applications. ``python -m examples.shop`` is the Quick start demo."""
