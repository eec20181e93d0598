"""Run a checkpoint on the toy world's held-out set and report every accuracy: ``evaluate_checkpoint``.

For each eval dialogue, each user turn is sent through the public chat API with the model's own earlier answers
as history. The first answer is free (routing is judged on it); when it did not produce what was asked, the
turn is asked again with ``force``/``forbid`` so that content is still judged, and that answer stays in the
history. Text answers are read with the caption parser, media with the attribute classifiers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nextgpt.apps.agent.specs import attached_files
from nextgpt.dialogs.loaders import load_dialogues
from nextgpt.dialogs.schema import Dialogue
from nextgpt.dialogs.tool_calls import parse_tool_calls, render_tool_result
from nextgpt.toyworld.dataset import EVAL_FILES
from nextgpt.toyworld.dialogues import TOOL_CALL, Check
from nextgpt.toyworld.language import TEMPLATES, caption, parse_caption
from nextgpt.toyworld.prompts import HELD_OUT_INSTRUCTION, INSTRUCTIONS
from nextgpt.toyworld.world import MODALITIES, Meaning

from .accuracy import TEXT, retrieval_at_1, routed_right
from .metrics import cider_d, corpus_bleu

logger = logging.getLogger(__name__)

REPORT_NAME = "eval_toyworld.json"
VALIDATION_REPORT_NAME = "eval_toyworld-validation.json"
OPTIONAL_EVAL_FILES = ("tools", "tool_retries")  # eval files a world written by an older version may lack
LISTED_ROUTING_MISSES = 100  # the report lists at most this many routing misses (it counts them all)


def eval_part(eval_dir: str | Path) -> str:
    """Which set ``eval_dir`` holds: ``"held_out"`` (a world's eval files, `nextgpt toyworld data`) or
    ``"validation"`` (training combinations and phrasings, `nextgpt toyworld validation`), from its manifest."""
    manifest = Path(eval_dir) / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text(encoding="utf-8")).get("part", "held_out")
    return "held_out"


def report_name(part: str, routing_only: bool = False) -> str:
    """The file name of a checkpoint's report on ``part``: a validation or routing-only report never replaces the
    held-out one (``eval_toyworld.json``, ``eval_toyworld-validation.json``, ``eval_toyworld-routing.json``, …)."""
    name = VALIDATION_REPORT_NAME if part == "validation" else REPORT_NAME
    return name.replace(".json", "-routing.json") if routing_only else name


@dataclass
class TurnResult:
    kind: str
    check: Check
    produced: list[str]  # modalities of the free answer
    correct: bool  # content right (on the free answer, or the forced one when the free one missed)
    text: str
    dialogue_index: int = -1
    attributes: dict[str, bool] | None = None  # per checked attribute: right or not
    request: str = ""  # the user's turn that asked for it
    missed_answer: str = ""  # the free answer (signal tokens included) when it was not routed right, else ""


def _phrasing_patterns() -> list[tuple[re.Pattern, bool]]:
    """One pattern per instruction phrasing of every task (its words literal, each ``{slot}`` any text), with
    whether it is the task's held-out phrasing."""
    patterns = []
    for templates in INSTRUCTIONS.values():
        held_out = len(templates) + HELD_OUT_INSTRUCTION if HELD_OUT_INSTRUCTION < 0 else HELD_OUT_INSTRUCTION
        for index, template in enumerate(templates):
            literal = [re.escape(piece) for piece in re.split(r"\{\w+\}", template)]
            patterns.append((re.compile("(.+?)".join(literal), re.DOTALL), index == held_out))
    return patterns


_PHRASINGS = _phrasing_patterns()


def held_out_phrasing(request: str) -> bool | None:
    """Whether ``request`` is in a held-out instruction phrasing (True), a trained one (False), or none of the
    world's (None: a user's own words)."""
    text = re.sub(r"\b([Aa])n (?=[aeiou])", r"\1 ", request.strip())  # undo with_articles: the templates say "a"
    matched = [held for pattern, held in _PHRASINGS if pattern.fullmatch(text)]
    return any(matched) if matched else None


def load_eval_set(eval_dir: str | Path, limit: int | None = None) -> list[tuple[str, Dialogue, list[Check]]]:
    """``(kind, dialogue, checks)`` of every eval dialogue, read with the project's loaders.

    Raises:
        FileNotFoundError: when ``eval_dir`` has no targets.jsonl (build it with `nextgpt toyworld data`).
    """
    folder = Path(eval_dir)
    targets_file = folder / "targets.jsonl"
    if not targets_file.is_file():
        raise FileNotFoundError(f"{folder} has no targets.jsonl; build the toy world with "
                                f"`nextgpt toyworld data --out {folder}`")
    targets = {}
    for line in targets_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        targets[row["id"]] = (row["kind"], [Check.from_dict(c) for c in row["checks"]])
    items = []
    for name in EVAL_FILES:
        path = folder / f"eval_{name}.jsonl"
        if name in OPTIONAL_EVAL_FILES and not path.is_file():
            logger.warning("%s has no %s (a world built before it was added): %s not evaluated; rebuild the "
                           "world with `nextgpt toyworld data` to include it", folder, path.name, name)
            continue
        dialogues = load_dialogues([path], format="dialogue")
        chosen = dialogues if limit is None else _spread(dialogues, limit)
        items += [(targets[d.id][0], d, targets[d.id][1]) for d in chosen]
    return items


def _spread(dialogues: list[Dialogue], limit: int) -> list[Dialogue]:
    """``limit`` dialogues spread over the file (files are grouped by modality)."""
    if limit >= len(dialogues):
        return dialogues
    return [dialogues[i] for i in np.linspace(0, len(dialogues) - 1, limit).round().astype(int)]


def _judge_tool_call(text: str, check: Check) -> dict[str, bool]:
    """Per checked field of a planned tool call: the tool's name, then each argument the check names (a generate
    call's description is read with the caption parser). Only the first call of the answer counts."""
    calls = parse_tool_calls(text).calls
    call = calls[0] if calls else None
    expected = dict(check.attributes)
    tool = expected.pop("tool")
    judged = {"tool": call is not None and call.name == tool}
    arguments = call.arguments if call is not None else {}
    if tool.startswith("generate_"):
        description = arguments.get("description")
        read = parse_caption(description, check.about) if isinstance(description, str) else {}
        judged.update({name: read.get(name) == value for name, value in expected.items()})
    else:
        judged.update({name: arguments.get(name) == value for name, value in expected.items()})
    return judged


def _judge(response: Any, check: Check, classifiers: Any) -> dict[str, bool]:
    """Per checked attribute: whether the answer (text read by the parser, media by the judges, a tool call by
    ``_judge_tool_call``) has it right."""
    if check.produce == TOOL_CALL:
        return _judge_tool_call(response.text, check)
    if check.produce == TEXT:
        predicted = parse_caption(response.text, check.about)
    else:
        made = response.media_of(check.produce)
        predicted = classifiers.predict(check.produce, [made[0].data], [made[0].rate])[0] if made else {}
    return {name: predicted.get(name) == value for name, value in check.attributes.items()}


def _run_dialogue(pipe: Any, kind: str, dialogue: Dialogue, checks: list[Check], classifiers: Any,
                  options: Any, free_paths: bool = False) -> list[TurnResult]:
    """Every checked turn of ``dialogue``, asked in order with the model's own answers as history. Media outputs
    are judged when ``options.decode`` made them; otherwise (routing only) only text answers and tool calls are.
    A call's ``path`` is held to the files the dialogue attached, as the agent holds it, unless ``free_paths``."""
    from nextgpt.types import Media, Message

    by_turn = {c.turn: c for c in checks}
    system = "\n".join(turn.text for turn in dialogue.turns if turn.role == "system") or None
    conversation = pipe.conversation(system=system, options=options)
    results = []
    turns = dialogue.turns
    attached: list[str] = []
    for index, turn in enumerate(turns):
        if turn.role == "user" and options is not None and not free_paths and attached_files(turn.text):
            # the agent holds a call's "path" to the files in its working folder: so does its evaluation
            attached += [path for path in attached_files(turn.text) if path not in attached]
            conversation.options = dataclasses.replace(options, string_choices={"path": tuple(attached)})
        if turn.role == "assistant" and not turn.train:  # given, not asked for: e.g. the failed call of a retry
            conversation.messages.append(Message("assistant", turn.text))
            continue
        if turn.role not in ("user", "tool"):
            continue
        check = by_turn.get(index + 1)
        media = [Media(ref.modality, ref.path) for ref in turn.inputs]
        # a tool result is a user-side turn, as the agent sends it (apps/agent/messages.py)
        text = render_tool_result(turn.tool_name or "tool", turn.text) if turn.role == "tool" else turn.text
        if index + 1 < len(turns) and turns[index + 1].role == "assistant" and not turns[index + 1].train:
            conversation.messages.append(Message.user(text, media=media))
            continue
        response = conversation.say(text, media=media)
        if check is None:
            continue
        produced = [m.modality for m in response.media]
        if check.produce == TOOL_CALL:  # judged as planned: a call is text, routing does not apply
            attributes = _judge(response, check, classifiers)
            results.append(TurnResult(kind, check, produced, all(attributes.values()), response.text,
                                      attributes=attributes, request=turn.text))
            break  # the rest of the dialogue (the tool's result) is what the agent would run
        routed = routed_right(check.produce, produced)
        missed = "" if routed else response.raw_text
        if not routed:  # asked again with the modality forced: its content is judged, and it is the history
            conversation.undo()
            outputs = {spec.name for spec in pipe.config.output_modalities}
            force = set() if check.produce == TEXT else {check.produce}
            response = conversation.say(turn.text, media=media, force=force, forbid=outputs - force)
        if check.produce != TEXT and not options.decode:  # planned, not made (routing only): nothing to judge
            results.append(TurnResult(kind, check, produced, False, response.text, request=turn.text,
                                      missed_answer=missed))
            continue
        attributes = _judge(response, check, classifiers)
        results.append(TurnResult(kind, check, produced, all(attributes.values()), response.text,
                                  attributes=attributes, request=turn.text, missed_answer=missed))
    return results


def signal_retrieval(pipe: Any, dialogues: list[Dialogue], modality: str) -> float:
    """Stage-2 retrieval@1: teacher-forced signal features of each requested ``modality`` output, projected by
    the output projector, against the decoder text-encoder embeddings of all the captions (``[N, Q·D]``)."""
    import torch

    from nextgpt.dialogs.collate import collate
    from nextgpt.dialogs.layout import TokenLayout
    from nextgpt.dialogs.tokenize import encode_dialogues

    model = pipe.model
    layout = TokenLayout.from_model(model)
    examples, _ = encode_dialogues(dialogues, layout, max_length=None)
    features, captions = [], []
    for first in range(0, len(examples), 8):
        batch = collate(examples[first:first + 8], pad_id=layout.tokenizer.pad_token_id, padding_side="right")
        rows, positions, requests = batch.signal_index(modality)
        if not requests:
            continue
        media = batch.media_items()
        with torch.no_grad():
            tokens = None
            if media:
                grouped = defaultdict(list)
                for item in media:
                    grouped[item.modality].append(item.path)
                if len(grouped) > 1:
                    raise ValueError("signal retrieval expects generation prompts without input media")
                (media_modality, paths), = grouped.items()
                tokens = model.encode_media(media_modality, paths).flatten(0, 1)  # encoded, projected: [M·T, H]
            out = model(batch.input_ids.to(model.device), batch.attention_mask.to(model.device), tokens)
            hidden = out.hidden_states[-1]
            ids = batch.input_ids.to(model.device)[rows[:, None], positions]
            conditions = model.signal_conditions(modality, hidden[rows[:, None], positions],
                                                 model.llm.get_input_embeddings()(ids))
        features.append(conditions.flatten(1).float().cpu().numpy())
        captions += [r.caption for r in requests]
    if len(set(captions)) < 2:  # one caption is retrieved trivially
        return float("nan")
    with torch.no_grad():
        targets = pipe.decoders[modality].encode_text(captions).flatten(1).float().cpu().numpy()
    return retrieval_at_1(np.concatenate(features), targets, labels=captions)


def _references(check: Check) -> list[str]:
    meaning = Meaning.of(check.about, check.attributes)
    return [caption(meaning, p) for p in range(len(TEMPLATES[check.about]))]


def _mean(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def summarize(results: list[TurnResult], retrieval: dict[str, float | None], *, media_judged: bool = True) -> dict:
    """The report: per modality captioning / generation / routing / conversion accuracy and retrieval@1;
    multi-turn accuracy (dialogues with every turn right), BLEU-4 / CIDEr-D of the captioning answers, and tool
    calls (with the agent's prompt, the first call names the right tool with the right arguments).
    A value is None where the eval set had no item for it, and — ``media_judged=False``, outputs planned but not
    made — for what needs the media judged: generation, conversion and multi-turn accuracy."""
    if not media_judged:
        # routing reads which outputs an answer has, not the media: from every result; the accuracies from the
        # kinds judged on text (captioning, tool calls) only
        report = summarize([r for r in results if r.kind not in ("generation", "conversion", "multiturn")], retrieval)
        routed = summarize(results, retrieval)
        for modality, row in report["per_modality"].items():
            row.update(generation=None, conversion=None, routing=routed["per_modality"][modality]["routing"])
        for key in ("routing_text", "routing_by_phrasing", "routing_misses", "counts"):
            report[key] = routed[key]
        report.update(multiturn=None, multiturn_turns=None, media_judged=False)
        return report
    per_modality: dict[str, dict] = {}
    for modality in MODALITIES:
        def pick(kind: str, field: str) -> list[TurnResult]:
            return [r for r in results if r.kind == kind and getattr(r.check, field) == modality]

        per_modality[modality] = {
            "captioning": _mean([r.correct for r in pick("captioning", "about")]),
            "generation": _mean([r.correct for r in pick("generation", "produce")]),
            "routing": _mean([routed_right(r.check.produce, r.produced) for r in results
                              if r.kind != "multiturn" and r.check.produce == modality]),
            "conversion": _mean([r.correct for r in pick("conversion", "produce")]),
            "retrieval_at_1": retrieval.get(modality),
        }
    text_requests = [r for r in results if r.kind != "multiturn" and r.check.produce == TEXT]
    dialogues: dict[int, list[bool]] = defaultdict(list)
    for r in results:
        if r.kind == "multiturn":
            dialogues[r.dialogue_index].append(r.correct and routed_right(r.check.produce, r.produced))
    by_attribute: dict[str, dict[str, dict[str, list[bool]]]] = {}
    for r in results:
        if r.kind == "multiturn" or not r.attributes:
            continue
        tool = r.check.attributes.get("tool")
        target = {"captioning": r.check.about, "tools": tool, "tool_retry": tool}.get(r.kind, r.check.produce)
        for name, ok in r.attributes.items():
            by_attribute.setdefault(r.kind, {}).setdefault(target, {}).setdefault(name, []).append(ok)
    by_combination: dict[str, dict[str, dict[str, list[bool]]]] = {}
    for r in results:
        if r.kind in ("captioning", "generation"):  # single-turn: the check holds the item's whole meaning
            key = "-".join(str(value) for value in r.check.attributes.values())
            by_combination.setdefault(r.kind, {}).setdefault(r.check.about, {}).setdefault(key, []).append(r.correct)
    captions = [r for r in results if r.kind == "captioning"]
    calls = [r for r in results if r.kind == "tools"]
    routed = [r for r in results if r.check.produce != TOOL_CALL]
    phrasing = {r.request: held_out_phrasing(r.request) for r in routed}
    misses = [r for r in routed if not routed_right(r.check.produce, r.produced)]
    candidates, references = [r.text for r in captions], [_references(r.check) for r in captions]
    return {
        "per_modality": per_modality,
        "per_attribute": {kind: {m: {name: _mean(hits) for name, hits in names.items()}
                                 for m, names in targets.items()} for kind, targets in by_attribute.items()},
        # each held-out combination's items (all attributes right / asked): a modality with few held-out
        # combinations (audio: 3) is mostly a count of which of them a build gets right
        "per_combination": {kind: {m: {key: {"right": sum(hits), "of": len(hits)} for key, hits in sorted(keys.items())}
                                   for m, keys in by_modality.items()} for kind, by_modality in by_combination.items()},
        "routing_text": _mean([routed_right(TEXT, r.produced) for r in text_requests]),
        # every routed request (multi-turn turns included) by its instruction phrasing: held out of training or not
        "routing_by_phrasing": {name: _mean([routed_right(r.check.produce, r.produced) for r in routed
                                             if phrasing[r.request] is held])
                                for name, held in (("trained", False), ("held_out", True))},
        # what each routing miss was asked and answered (multi-turn turns included): where routing goes wrong
        "routing_misses": {"count": len(misses), "listed": [
            {"kind": r.kind, "request": r.request, "asked": r.check.produce, "produced": r.produced,
             "answer": r.missed_answer} for r in misses[:LISTED_ROUTING_MISSES]]},
        "multiturn": _mean([all(turns) for turns in dialogues.values()]),
        "multiturn_turns": _mean([ok for turns in dialogues.values() for ok in turns]),
        "tool_calls": _mean([r.correct for r in calls]),
        "tool_calls_by_kind": {kind: _mean([r.correct for r in calls if r.check.attributes["tool"].startswith(kind)])
                               for kind in ("describe", "generate", "convert")},
        "tool_retries": _mean([r.correct for r in results if r.kind == "tool_retry"]),
        "bleu4": corpus_bleu(candidates, references) if captions else None,
        "cider_d": cider_d(candidates, references) if len(captions) > 1 else None,
        "counts": {"turns": len(results), "dialogues": len(dialogues),
                   "per_kind": {k: sum(r.kind == k for r in results) for k in
                                ("captioning", "generation", "conversion", "multiturn", "tools", "tool_retry")}},
    }


def evaluate_checkpoint(pipe: Any, eval_dir: str | Path, classifiers: Any, *, limit: int | None = None,
                        out_path: str | Path | None = None, options: Any = None, routing_only: bool = False,
                        free_paths: bool = False) -> dict:
    """Evaluate ``pipe`` (a ``NextGPT``) on the toy-world set in ``eval_dir``: a world's held-out set, or a
    validation set (``build_validation``; the report's ``part`` says which).

    Args:
        classifiers: ``AttributeClassifiers`` (the judges of generated media).
        limit: at most this many dialogues per eval file (spread over the file), for quick runs; retrieval@1
            always uses the whole generation file (one teacher-forced pass).
        out_path: where the JSON report is written (None: not written).
        options: ``GenerationOptions`` for every request (default: greedy, 64 new tokens, media not saved).
        routing_only: plan the outputs without running the decoders (``GenerationOptions.decode=False``): routing,
            captioning, tool calls and retrieval as in a full run, in a fraction of the time; generation,
            conversion and multi-turn accuracy are None (``media_judged: false`` in the report).
        free_paths: plan tool calls without holding ``path`` to the attached files (the model's own copying of
            file names; the agent always holds it). The report's ``tool_paths`` says which.

    Returns:
        The report (see ``summarize``), with ``eval_dir`` and ``limit``.
    """
    from nextgpt.options import GenerationOptions

    options = options or GenerationOptions(max_new_tokens=64, output_dir=None)
    if routing_only:
        options = dataclasses.replace(options, decode=False)
    items = load_eval_set(eval_dir, limit)
    results: list[TurnResult] = []
    for number, (kind, dialogue, checks) in enumerate(tqdm(items, desc="toy-world eval", disable=None)):
        for result in _run_dialogue(pipe, kind, dialogue, checks, classifiers, options, free_paths):
            result.dialogue_index = number
            results.append(result)
    # teacher-forced and cheap: always on the whole held-out generation file, whatever the limit
    generation = load_dialogues([Path(eval_dir) / "eval_generation.jsonl"], format="dialogue")
    retrieval = {m: signal_retrieval(pipe, generation, m) for m in MODALITIES
                 if m in {spec.name for spec in pipe.config.output_modalities}}
    retrieval = {m: None if np.isnan(value) else value for m, value in retrieval.items()}
    report = {"eval_dir": str(eval_dir), "part": eval_part(eval_dir), "limit": limit,
              "tool_paths": "free" if free_paths else "attached files",
              **summarize(results, retrieval, media_judged=options.decode)}
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        logger.info("toy-world report written to %s", out_path)
    return report


def format_report(report: dict) -> str:
    """The report as a table: one row per modality, then the dialogue and text metrics."""
    columns = ("captioning", "generation", "routing", "conversion", "retrieval_at_1")
    validation = report.get("part") == "validation"
    lines = ["set: " + ("validation (training combinations and phrasings, fresh draws)" if validation
                        else "held out (combinations and phrasings never trained on)")]
    if report.get("media_judged") is False:
        lines.append("outputs planned, not made (routing only): generation, conversion and multi-turn not measured")
    lines.append(f"{'modality':<10}" + "".join(f"{c:>16}" for c in columns))
    for modality, row in report["per_modality"].items():
        lines.append(f"{modality:<10}" + "".join(f"{_cell(row[c]):>16}" for c in columns))
    lines.append(f"routing (text answers): {_cell(report['routing_text'])}")
    if report.get("routing_by_phrasing"):
        by = report["routing_by_phrasing"]
        lines.append(f"routing by request phrasing: trained {_cell(by['trained'])}, held out {_cell(by['held_out'])}")
    if report.get("routing_misses") is not None:
        lines.append(f"routing misses: {report['routing_misses']['count']} (each listed in the JSON report: request, "
                     f"what it produced, the answer)")
    lines.append(f"multi-turn: {_cell(report['multiturn'])} of dialogues, {_cell(report['multiturn_turns'])} of turns")
    lines.append(f"captioning BLEU-4: {_cell(report['bleu4'])}   CIDEr-D: {_cell(report['cider_d'])}")
    if report.get("tool_calls") is not None:
        kinds = " ".join(f"{k} {_cell(v)}" for k, v in report.get("tool_calls_by_kind", {}).items())
        paths = {"free": "paths free", "attached files": "paths held to the attached files"}.get(
            report.get("tool_paths"), "paths free")  # reports from before held paths planned them free
        lines.append(f"tool calls (planned right, agent prompt, {paths}): {_cell(report['tool_calls'])}   ({kinds})")
    if report.get("tool_retries") is not None:
        lines.append(f"tool calls after a failed call's error (retried right): {_cell(report['tool_retries'])}")
    for kind, by_modality in report.get("per_combination", {}).items():
        cells = [f"{m} {sum(c['right'] * 2 > c['of'] for c in keys.values())}/{len(keys)}"
                 for m, keys in by_modality.items()]
        lines.append(f"{kind}: {'' if validation else 'held-out '}combinations right in most of their items: "
                     + ", ".join(cells))
    for kind, targets in report.get("per_attribute", {}).items():
        cells = [f"{m} " + " ".join(f"{name} {_cell(value)}" for name, value in names.items())
                 for m, names in targets.items()]
        lines.append(f"{kind} per attribute: " + "; ".join(cells))
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"
