"""ceap_engine: an Amazon States Language interpreter for the CEAP pipeline."""

__version__ = "0.1.0"
