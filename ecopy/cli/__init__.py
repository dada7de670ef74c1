"""The ``ecopy`` command line: ``ecopy --app module:attribute list | graph``."""
