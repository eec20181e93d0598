"""Evaluation: text metrics of real benchmarks (BLEU-4, CIDEr-D), accuracy helpers, the toy-world evaluation."""
from .accuracy import attribute_accuracy, caption_accuracy, retrieval_at_1, routing_accuracy
from .metrics import cider_d, corpus_bleu, tokenize

__all__ = ["attribute_accuracy", "caption_accuracy", "cider_d", "corpus_bleu", "retrieval_at_1",
           "routing_accuracy", "tokenize"]
