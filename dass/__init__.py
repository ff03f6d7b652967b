"""dass: data analysis as a service for research facilities."""

__version__ = "0.1.0"
