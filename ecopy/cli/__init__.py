"""The ``ecopy`` command line: ``ecopy --app module:attribute list | graph | run | dead-letter``."""
