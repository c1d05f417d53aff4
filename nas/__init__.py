"""Neural architecture search for efficient vision transformers, judged by measured latency."""

from search_spaces.arch import ArchConfig, LayerConfig

__all__ = ["ArchConfig", "LayerConfig"]
__version__ = "0.1.0"
