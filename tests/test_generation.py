"""The signal-token decode loop on a tiny random LLaMA: forced completion, force/forbid, streaming, batching."""
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from nextgpt.config import LLMConfig
from nextgpt.generation import SignalGenerator, canonicalize_signals
from nextgpt.llm import load_tokenizer
from nextgpt.model import add_tokens
from nextgpt.options import GenerationOptions

SIGNALS = {"image": ["[IMG0]", "[IMG1]", "[IMG2]", "[IMG3]"], "audio": ["[AUD0]", "[AUD1]"]}


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    tokenizer = load_tokenizer(LLMConfig(tokenizer="builtin:tiny-llama"))
    config = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, vocab_size=800, max_position_embeddings=256)
    llm = AutoModelForCausalLM.from_config(config).eval()
    tokens = ["<media>"] + [t for toks in SIGNALS.values() for t in toks]
    add_tokens(tokenizer, llm, tokens)
    ids = {m: tokenizer.convert_tokens_to_ids(toks) for m, toks in SIGNALS.items()}
    return llm, tokenizer, ids


def make_generator(parts, bias_token: int | None = None):
    llm, tokenizer, ids = parts
    if bias_token is not None:  # a model that always wants this token (to test model-initiated signals)
        head = nn.Linear(llm.lm_head.in_features, llm.lm_head.out_features, bias=True)
        head.weight.data.copy_(llm.lm_head.weight.data)
        head.bias.data.zero_()
        head.bias.data[bias_token] = 1e4
        llm = _with_head(llm, head)
    media = tokenizer.convert_tokens_to_ids(["<media>"])
    return SignalGenerator(llm, tokenizer, ids, never_generate=media, stop_strings=("###",)), tokenizer, ids


def _with_head(llm, head):
    import copy

    clone = copy.deepcopy(llm)
    clone.lm_head = head
    return clone


def prompt(tokenizer, llm, texts):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return llm.get_input_embeddings()(batch["input_ids"]), batch["attention_mask"]


def test_forced_modality_yields_one_complete_span(parts):
    generator, tokenizer, ids = make_generator(parts)
    embeds, mask = prompt(tokenizer, generator.llm, ["### Human: draw\n### Assistant:"])
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=6, force={"image"})])
    assert [s.modality for s in row.spans] == ["image"]
    assert row.spans[0].hidden.shape == (4, 32) and row.spans[0].embeds.shape == (4, 32)
    assert row.token_ids[-4:] == ids["image"] and "".join(SIGNALS["image"]) in row.raw_text
    assert "[IMG" not in row.text


def test_budget_cut_inside_a_signal_sequence_is_completed(parts):
    generator, tokenizer, ids = make_generator(parts, bias_token=parts[2]["audio"][0])
    embeds, mask = prompt(tokenizer, generator.llm, ["hello"])
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=1)])
    assert row.token_ids[:2] == ids["audio"]  # budget was 1 token, the sequence still completes
    assert [s.modality for s in row.spans] == ["audio"]


def test_forbidden_modality_is_never_started(parts):
    generator, tokenizer, ids = make_generator(parts, bias_token=parts[2]["image"][0])
    embeds, mask = prompt(tokenizer, generator.llm, ["hello"])
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=5, forbid={"image"})])
    assert not any(t in ids["image"] for t in row.token_ids)
    [free] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=5)])
    assert free.token_ids[:4] == ids["image"]


def test_degenerate_signal_loops_are_bounded(parts):
    generator, tokenizer, ids = make_generator(parts, bias_token=parts[2]["image"][0])
    embeds, mask = prompt(tokenizer, generator.llm, ["hello"])
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=20, max_media_per_modality=2)])
    assert [s.modality for s in row.spans] == ["image", "image"]


def test_signal_features_are_read_at_the_signal_positions(parts):
    """The hidden state of [IMGk] is the model's state when [IMGk] is the *input* (same as teacher forcing)."""
    generator, tokenizer, ids = make_generator(parts)
    llm = generator.llm
    embeds, mask = prompt(tokenizer, llm, ["### Human: draw\n### Assistant:"])
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=3, force={"image"})])
    full_ids = torch.cat([tokenizer(["### Human: draw\n### Assistant:"], return_tensors="pt")["input_ids"],
                          torch.tensor([row.token_ids])], dim=1)
    out = llm(input_ids=full_ids, output_hidden_states=True)
    positions = [i for i, t in enumerate(full_ids[0].tolist()) if t in ids["image"]]
    torch.testing.assert_close(row.spans[0].hidden, out.hidden_states[-1][0, positions], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(row.spans[0].embeds, llm.get_input_embeddings()(full_ids)[0, positions])


def test_streamed_text_equals_final_text(parts):
    generator, tokenizer, _ = make_generator(parts)
    embeds, mask = prompt(tokenizer, generator.llm, ["### Human: hi\n### Assistant:"])
    pieces = []
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=12)],
                               on_text=lambda r, d: pieces.append(d))
    assert "".join(pieces) == row.text


def test_batch_equals_one_by_one(parts):
    generator, tokenizer, _ = make_generator(parts)
    texts = ["### Human: hi\n### Assistant:", "### Human: a much longer question here\n### Assistant:"]
    options = [GenerationOptions(max_new_tokens=8, force={"audio"}), GenerationOptions(max_new_tokens=8)]
    embeds, mask = prompt(tokenizer, generator.llm, texts)
    batched = generator.generate(embeds, mask, options)
    for text, option, row in zip(texts, options, batched):
        e, m = prompt(tokenizer, generator.llm, [text])
        [single] = generator.generate(e, m, [option])
        assert single.token_ids == row.token_ids
        for a, b in zip(single.spans, row.spans):
            torch.testing.assert_close(a.hidden, b.hidden, atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_with_a_seeded_generator(parts):
    generator, tokenizer, _ = make_generator(parts)
    embeds, mask = prompt(tokenizer, generator.llm, ["hi"])
    options = [GenerationOptions(max_new_tokens=10, temperature=1.0, top_p=0.9)]
    first = generator.generate(embeds, mask, options, generators=[torch.Generator().manual_seed(3)])
    second = generator.generate(embeds, mask, options, generators=[torch.Generator().manual_seed(3)])
    assert first[0].token_ids == second[0].token_ids


def test_cancel_stops_at_the_next_token(parts):
    generator, tokenizer, _ = make_generator(parts)
    embeds, mask = prompt(tokenizer, generator.llm, ["hi"])
    calls = []
    [row] = generator.generate(embeds, mask, [GenerationOptions(max_new_tokens=50)],
                               should_stop=lambda: calls.append(1) or len(calls) > 3)
    assert row.finish_reason == "cancelled" and len(row.token_ids) <= 3


@pytest.mark.parametrize("text,clean,warned", [
    ("a [IMG0][IMG1][IMG2][IMG3] b", "a [IMG0][IMG1][IMG2][IMG3] b", False),
    ("a [IMG0][IMG1] b", "a [IMG0][IMG1][IMG2][IMG3] b", True),   # partial: completed
    ("a [IMG2][IMG3] b", "a  b", True),                          # starts mid-way: dropped
    ("a [IMG0][AUD1] b", "a [IMG0][IMG1][IMG2][IMG3] b", True),  # switches modality: completed + dropped
    ("[AUD0][AUD1][AUD0][AUD1]", "[AUD0][AUD1][AUD0][AUD1]", False),  # two complete sequences
])
def test_canonicalize_signals(text, clean, warned):
    out, warnings = canonicalize_signals(text, SIGNALS)
    assert out == clean and bool(warnings) == warned
