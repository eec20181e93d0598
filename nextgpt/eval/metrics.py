"""Text metrics of captioning benchmarks, written from scratch: corpus BLEU-4 and CIDEr-D.

Both take ``candidates`` (one string per item) and ``references`` (a list of strings per item) and tokenise with
``tokenize`` (lower case, words and numbers; punctuation dropped, as coco-caption's PTB tokeniser does).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _check(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidate(s) but {len(references)} reference list(s); "
                         "give one list of references per candidate")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"items {empty[:5]} have no reference; every item needs at least one")


def corpus_bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
                smoothing: str = "none") -> float:
    """Corpus BLEU (Papineni et al. 2002): clipped n-gram precisions summed over the corpus, their geometric
    mean, times the brevity penalty ``exp(1 - r / c)`` when the candidates are shorter (``r``: for each item the
    reference length closest to the candidate's, the shorter on ties; ``c``: candidate length).

    Args:
        smoothing: ``none`` (any zero precision gives 0), ``add1`` (add one to the matches and the total of every
            order above 1, Lin & Och 2004 — for sentence-level use) or ``epsilon`` (a zero count becomes 0.1).

    Returns:
        BLEU in [0, 1].
    """
    _check(candidates, references)
    if smoothing not in ("none", "add1", "epsilon"):
        raise ValueError(f"unknown BLEU smoothing {smoothing!r}; use 'none', 'add1' or 'epsilon'")
    matches, totals = [0] * max_n, [0] * max_n
    candidate_length = reference_length = 0
    for candidate, refs in zip(candidates, references):
        tokens = tokenize(candidate)
        ref_tokens = [tokenize(r) for r in refs]
        candidate_length += len(tokens)
        reference_length += min((abs(len(r) - len(tokens)), len(r)) for r in ref_tokens)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(tokens, n)
            most = Counter()
            for r in ref_tokens:
                most |= ngrams(r, n)  # the max count of each n-gram over the references
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            totals[n - 1] += max(len(tokens) - n + 1, 0)
    log_precision = 0.0
    for n in range(max_n):
        hit, total = matches[n], totals[n]
        if smoothing == "add1" and n > 0:
            hit, total = hit + 1, total + 1
        elif smoothing == "epsilon" and hit == 0:
            hit = 0.1
        if hit == 0 or total == 0:
            return 0.0
        log_precision += math.log(hit / total) / max_n
    if candidate_length == 0:
        return 0.0
    brevity = 1.0 if candidate_length > reference_length else math.exp(1 - reference_length / candidate_length)
    return brevity * math.exp(log_precision)


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
            sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (Vedantam et al. 2015, as coco-caption computes it).

    Each sentence becomes one tf-idf vector per n-gram order (n = 1..4): term frequency × ``log(N / df)``, with
    ``df`` the number of items whose references contain the n-gram and ``N`` the number of items. Per order, the
    candidate-vs-reference similarity is ``Σ min(c, r) · r / (|c| |r|)`` (the candidate's weights clipped by the
    reference's), times the Gaussian length penalty ``exp(-(Δ²) / (2σ²))`` where Δ is the difference in bigram
    counts (words − 1). The item score averages the orders and the references, × 10; the corpus score is the
    mean over items. Needs several items: with one item every idf is 0.

    Returns:
        CIDEr-D (0 for no overlap; around 10 for a perfect match on a varied corpus).
    """
    _check(candidates, references)
    items = [([ngrams(tokenize(r), n) for n in range(1, max_n + 1)] for r in refs) for refs in references]
    items = [list(refs) for refs in items]
    document_frequency: Counter = Counter()
    for refs in items:
        document_frequency.update({gram for ref in refs for order in ref for gram in order})
    log_items = math.log(float(len(items)))

    def vector(counts: list[Counter]) -> tuple[list[dict], list[float], int]:
        weights = [{g: c * (log_items - math.log(max(1.0, document_frequency[g]))) for g, c in order.items()}
                   for order in counts]
        norms = [math.sqrt(sum(w * w for w in order.values())) for order in weights]
        return weights, norms, sum(counts[1].values()) if max_n > 1 else sum(counts[0].values())

    scores = []
    for candidate, refs in zip(candidates, items):
        tokens = tokenize(candidate)
        c_vec, c_norm, c_len = vector([ngrams(tokens, n) for n in range(1, max_n + 1)])
        total = [0.0] * max_n
        for ref in refs:
            r_vec, r_norm, r_len = vector(ref)
            penalty = math.exp(-((c_len - r_len) ** 2) / (2 * sigma ** 2))
            for n in range(max_n):
                value = sum(min(w, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0) for g, w in c_vec[n].items())
                if c_norm[n] and r_norm[n]:
                    value /= c_norm[n] * r_norm[n]
                total[n] += value * penalty
        scores.append(sum(total) / max_n / len(refs) * 10.0)
    return sum(scores) / len(scores) if scores else 0.0
