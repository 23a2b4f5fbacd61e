"""Autonomy Gateway: the governed layer between LLM agents and enterprise tools."""

__version__ = "0.1.0"
