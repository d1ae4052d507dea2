"""A protocol-faithful stand-in for Kong 3.x, for machines where Kong cannot be installed."""

__version__ = "0.1.0"
KONG_VERSION = "3.9.1"  # the Kong release whose behaviour the emulator follows
