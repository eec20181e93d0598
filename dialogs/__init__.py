"""Dialogue schema, conversation templates, loss masks and dataset loaders."""
from .templates import ChatTemplate, RoleTemplate, Segment, get_template

__all__ = ["ChatTemplate", "RoleTemplate", "Segment", "get_template"]
# Tokenisation (import from the modules; they pull in torch only where needed):
#   from nextgpt.dialogs.layout import TokenLayout
#   from nextgpt.dialogs.tokenize import encode_dialogue, encode_dialogues, EncodedExample, IGNORE_INDEX
#   from nextgpt.dialogs.collate import collate, Batch
#   from nextgpt.dialogs.loaders import load_dialogues
#   from nextgpt.dialogs.validate import validate
