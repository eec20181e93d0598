"""Dialogue schema, conversation templates, loss masks and dataset loaders."""
from .templates import ChatTemplate, RoleTemplate, Segment, get_template

__all__ = ["ChatTemplate", "RoleTemplate", "Segment", "get_template"]
