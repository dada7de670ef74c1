"""Buses, routing and handler declarations: the modelling layer on top of messaging."""
