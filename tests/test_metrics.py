"""BLEU-4 and CIDEr-D against hand-computed cases, the reference/output file readers, the accuracy helpers and
``nextgpt eval metrics``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nextgpt.eval.accuracy import attribute_accuracy, caption_accuracy, retrieval_at_1, routed_right, routing_accuracy
from nextgpt.eval.metrics import cider_d, corpus_bleu, tokenize
from nextgpt.eval.text_files import read_pairs


# ---- BLEU ------------------------------------------------------------------------------------------------
def test_bleu_identical_is_one_and_tokenisation_drops_case_and_punctuation():
    assert tokenize("The cat, sat.") == ["the", "cat", "sat"]
    assert corpus_bleu(["The cat sat on the mat."], [["the cat sat on the mat"]]) == pytest.approx(1.0)


def test_bleu_brevity_penalty():
    # all precisions 1; c = 4, r = 6 → BP = exp(1 - 6/4)
    assert corpus_bleu(["the cat sat on"], [["the cat sat on the mat"]]) == pytest.approx(math.exp(-0.5))


def test_bleu_is_corpus_level_not_a_mean_of_sentences():
    # item 2 alone has no trigram (sentence BLEU 0); summed over the corpus: p1 = 6/6, p2 = 4/4, p3 = 2/2,
    # p4 = 1/1; c = 6, r = 4 + 6 = 10 → BP = exp(1 - 10/6)
    score = corpus_bleu(["a b c d", "a b"], [["a b c d"], ["a b c d e f"]])
    assert score == pytest.approx(math.exp(1 - 10 / 6))


def test_bleu_clipping_closest_reference_length_and_smoothing():
    candidate = ["the the the the the the the"]
    references = [["the cat is on the mat", "there is a cat on the mat"]]
    assert corpus_bleu(candidate, references) == 0.0  # no bigram matches
    # p1 clipped to 2/7 (max count of "the" in one reference); zero counts become 0.1; r = 7 (closest) → BP 1
    expected = math.exp((math.log(2 / 7) + math.log(0.1 / 6) + math.log(0.1 / 5) + math.log(0.1 / 4)) / 4)
    assert corpus_bleu(candidate, references, smoothing="epsilon") == pytest.approx(expected)
    # add1 on orders 2-4: p = 1, 3/3, 2/2, 1/1 (0 of 0 fourgrams + 1); BP = exp(1 - 6/3)
    assert corpus_bleu(["the cat sat"], [["the cat sat on the mat"]], smoothing="add1") == pytest.approx(math.exp(-1))


def test_bleu_errors_teach():
    with pytest.raises(ValueError, match="one list of references per candidate"):
        corpus_bleu(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="smoothing"):
        corpus_bleu(["a"], [["a"]], smoothing="magic")


# ---- CIDEr-D ---------------------------------------------------------------------------------------------
def test_cider_perfect_match_on_two_items():
    # every n-gram has df 1 of N = 2 → weight log 2; orders 1, 2 give similarity 1, orders 3, 4 have no n-grams:
    # item score = (1 + 1 + 0 + 0) / 4 * 10 = 5
    assert cider_d(["a b", "c d"], [["a b"], ["c d"]]) == pytest.approx(5.0)


def test_cider_length_penalty_and_partial_match():
    # item 2: "c" vs "c d": order 1 cosine 1/sqrt(2), order 2 nothing; Δ bigrams = 0 - 1 → exp(-1 / 72)
    second = (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4 * 10
    assert cider_d(["a b", "c"], [["a b"], ["c d"]]) == pytest.approx((5.0 + second) / 2)


def test_cider_clips_repeated_words():
    # "a a" vs "a b": candidate weight 2 log2 clipped to the reference's log2 → log2² / (2 log2 · sqrt(2) log2)
    first = 1 / (2 * math.sqrt(2)) / 4 * 10
    assert cider_d(["a a", "c d"], [["a b"], ["c d"]]) == pytest.approx((first + 5.0) / 2)


def test_cider_words_in_every_item_carry_no_weight_and_references_average():
    assert cider_d(["a", "a"], [["a b"], ["a c"]]) == pytest.approx(0.0)  # idf of "a" is log(2/2) = 0
    one = cider_d(["a b", "c d"], [["a b", "x y"], ["c d", "c d"]])
    assert one == pytest.approx((5.0 / 2 + 5.0) / 2)  # item 1: mean over its two references (1 and 0)


# ---- files and CLI ---------------------------------------------------------------------------------------
def test_read_pairs_txt_jsonl_and_coco(tmp_path):
    (tmp_path / "refs.txt").write_text("a red circle ||| a circle in red\na blue box\n")
    (tmp_path / "outs.txt").write_text("a red circle\na blue square\n")
    candidates, references = read_pairs(tmp_path / "refs.txt", tmp_path / "outs.txt")
    assert candidates == ["a red circle", "a blue square"]
    assert references == [["a red circle", "a circle in red"], ["a blue box"]]

    coco = {"annotations": [{"image_id": 7, "caption": "x y"}, {"image_id": 3, "caption": "p q"},
                            {"image_id": 7, "caption": "x z"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "results.json").write_text(json.dumps([{"image_id": 3, "caption": "p q"},
                                                       {"image_id": 7, "caption": "x y"}]))
    candidates, references = read_pairs(tmp_path / "coco.json", tmp_path / "results.json")
    assert candidates == ["p q", "x y"] and references == [["p q"], ["x y", "x z"]]

    (tmp_path / "refs.jsonl").write_text('{"references": ["a", "b"]}\n["c"]\n')
    (tmp_path / "one.txt").write_text("a\n")
    with pytest.raises(ValueError, match="1 output.*2 item"):
        read_pairs(tmp_path / "refs.jsonl", tmp_path / "one.txt")


def test_cli_eval_metrics(tmp_path, capsys):
    from nextgpt.cli import main

    (tmp_path / "refs.jsonl").write_text('["a b"]\n["c d"]\n')
    (tmp_path / "outs.txt").write_text("a b\nc d\n")
    assert main(["eval", "metrics", "--references", str(tmp_path / "refs.jsonl"),
                 "--outputs", str(tmp_path / "outs.txt"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["items"] == 2 and scores["cider_d"] == pytest.approx(5.0)
    assert main(["eval", "metrics", "--references", str(tmp_path / "missing.txt"),
                 "--outputs", str(tmp_path / "outs.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---- accuracy helpers ------------------------------------------------------------------------------------
def test_caption_accuracy_reads_phrasings_and_refuses_hedges():
    expected = [{"shape": "circle", "colour": "red"}] * 3
    texts = ["It is a big red disc on the left.", "a red or blue circle", "a green circle"]
    assert caption_accuracy(texts, ["image"] * 3, expected) == pytest.approx(1 / 3)


def test_attribute_and_routing_accuracy():
    assert attribute_accuracy([{"pitch": "low", "timbre": "sine"}, None], [{"pitch": "low"}] * 2) == 0.5
    assert routed_right("image", ["image"]) and routed_right("text", [])
    assert not routed_right("image", ["image", "audio"]) and not routed_right("text", ["audio"])
    assert routing_accuracy(["audio", "text", "video"], [["audio"], [], []]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one entry per item"):
        routing_accuracy(["audio"], [])


def test_retrieval_at_1():
    targets = np.eye(3)
    assert retrieval_at_1(targets * 5 + 0.1, targets) == 1.0
    swapped = targets[[1, 0, 2]]
    assert retrieval_at_1(swapped, targets) == pytest.approx(1 / 3)
    assert retrieval_at_1(swapped, targets, labels=["x", "x", "y"]) == 1.0  # same caption: equally right
    with pytest.raises(ValueError, match="same \\[N, D\\] shape"):
        retrieval_at_1(np.zeros((2, 3)), np.zeros((3, 3)))
