"""Model calls shared by every method: batched generation, answer NLL and per-token log-probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pmc_core.prompts import answer_ids, build_batch, pad_left, prompt_ids

GENERATION_ROWS = 64  # sequences generated at once, to bound memory on long forget sets


def masked_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean NLL of the label tokens != -100, where logits[:, t] predicts labels[:, t].

    logits (B, T, V), labels (B, T) -> (B,). Example: uniform logits over V tokens give log(V) for every row.
    """
    token_nll = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")  # (B, T)
    mask = (labels != -100).float()
    return (token_nll * mask).sum(1) / mask.sum(1).clamp(min=1)


def answer_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict answer tokens, aligned with their labels: (B, K, V) and (B, K).

    Only the span from the earliest answer token on goes through the LM head: prompts (a chat template's system
    text included) are often half of each row, and the vocabulary projection is the costliest layer of a small model.
    """
    device = next(model.parameters()).device
    labels = batch["labels"].to(device)
    answer_columns = (labels != -100).any(0).nonzero()
    first = int(answer_columns[0]) if len(answer_columns) else labels.shape[1] - 1
    keep = labels.shape[1] - first + 1  # positions first-1 .. T-1; the last one predicts nothing
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                   logits_to_keep=keep).logits
    return logits[:, -keep:-1], labels[:, first:]


def batch_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over all answer tokens of a batch (prompt and padding masked)."""
    logits, labels = answer_logits(model, batch)
    return F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100)


@torch.no_grad()
def answer_nll(model, tokenizer, questions: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
    """Mean per-token NLL of each answer given its question under `model`."""
    values: list[float] = []
    for start in range(0, len(questions), batch_size):
        batch = build_batch(tokenizer, questions[start: start + batch_size], answers[start: start + batch_size])
        values.extend(masked_token_nll(*answer_logits(model, batch)).tolist())
    return values


@torch.no_grad()
def token_logprobs(model, tokenizer, question: str, answer: str) -> tuple[list[str], list[float]]:
    """Each answer token (as text) and its log-probability given the question and the tokens before it."""
    device = next(model.parameters()).device
    prompt, target = prompt_ids(tokenizer, question), answer_ids(tokenizer, answer)
    ids = torch.tensor([prompt + target], device=device)
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)  # (T-1, V)
    positions = torch.arange(len(prompt) - 1, ids.shape[1] - 1, device=device)
    picked = logprobs[positions, ids[0, positions + 1]].tolist()
    tokens = [tokenizer.decode([token]) for token in target]
    return tokens, picked


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    *,
    num_samples: int = 1,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 40,
) -> list[list[str]]:
    """Answers to each question: one greedy answer, or `num_samples` sampled ones (seed torch beforehand)."""
    if not questions:
        return []
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_call = max(1, GENERATION_ROWS // num_samples)
    answers: list[list[str]] = []
    for start in range(0, len(questions), per_call):
        chunk = questions[start: start + per_call]
        ids, mask = pad_left([prompt_ids(tokenizer, q) for q in chunk], pad_id)
        options = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if not greedy else dict(do_sample=False)
        output = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=1 if greedy else num_samples,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            **options,
        )
        texts = tokenizer.batch_decode(output[:, ids.shape[1]:], skip_special_tokens=True)
        per_question = 1 if greedy else num_samples
        for index in range(len(chunk)):
            answers.append([text.strip() for text in texts[index * per_question: (index + 1) * per_question]])
    return answers
