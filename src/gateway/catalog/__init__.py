"""Every backend's tools, resources and prompts under one namespace, and its memory across restarts."""

from gateway.catalog.catalog import MAX_NAME_LENGTH, Catalog, exposed_name
from gateway.catalog.entries import PromptEntry, ResourceEntry, ResourceRoute, ToolEntry

__all__ = [
    "MAX_NAME_LENGTH",
    "Catalog",
    "PromptEntry",
    "ResourceEntry",
    "ResourceRoute",
    "ToolEntry",
    "exposed_name",
]
