"""The toy world: a synthetic multimodal world (shapes, tones, moving shapes) in which the whole stack learns on CPU.

``world`` (meanings and the cross-modal rule), ``render`` (ground-truth media), ``language`` (captions and their
parser), ``split`` (held-out combinations and phrasings), ``dialogues`` + ``dataset`` (files in our dialogue
schema), ``classifiers`` (attribute judges trained on renderings). See docs/toyworld.md.
"""
from .world import MODALITIES, Meaning, all_meanings, attribute_space, convert, linked_attributes

__all__ = ["MODALITIES", "Meaning", "all_meanings", "attribute_space", "convert", "linked_attributes"]
