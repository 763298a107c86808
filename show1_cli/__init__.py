"""show1: text-to-video generation with the Show-1 cascade, from the command line."""

__version__ = "0.1.0"
