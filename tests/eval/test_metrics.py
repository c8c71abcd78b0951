import pytest
import torch

from llm_jepa.data import example_from_row
from llm_jepa.eval.regex_equiv import equivalent
from llm_jepa.eval.tasks import detect_task, get_task
from llm_jepa.eval.tasks.hellaswag import pick


def ex(system, user, answer):
    return example_from_row({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                          {"role": "assistant", "content": answer}]})


GSM = "Answer the math question, show steps."


@pytest.mark.parametrize("gen,ok", [
    ("so 1000 in total\n#### 1,000", True), ("#### 1000.00", True), ("#### $1,000", True), ("#### +1000", True),
    ("#### 1000.0", True), ("####1000", True), ("#### $ 1,000.", True), ("the answer is 1000", True),
    ("#### 100", False), ("#### 10000", False), ("#### 1000.5", False), ("#### -1000", False), ("no number", False),
    # the first number after the first ####: models keep generating past their answer
    ("#### 1000 apples\n\nQuestion: and 7 more?\n#### 7", True), ("#### 7\nQuestion: ...\n#### 1000", False),
    ("#### the answer is 1000 (not 12)", True), ("####\n", False),
])
def test_gsm8k_final_answer_normalisation(gen, ok):
    e = ex(GSM, "q", "2 * 500 = <<2*500=1000>>1000\n#### 1,000")
    assert get_task("gsm8k").score(gen, e)["final"] is ok


@pytest.mark.parametrize("text,want", [
    ("#### 1,234,567.890", "1234567.89"), ("#### -0.50", "-0.5"), ("#### -0", "0"), ("#### 007", "7"),
    ("#### 3, 4 and 5", "3"), ("#### 0.25", "0.25"), ("2 then 3", "3"), ("none", None),
])
def test_gsm8k_number_normalisation(text, want):
    from llm_jepa.eval.tasks.gsm8k import final_answer

    assert final_answer(text) == want


def test_gsm8k_reference_without_final_answer_is_a_clear_error():
    bad = example_from_row({"messages": [{"role": "system", "content": GSM}, {"role": "user", "content": "q"},
                                         {"role": "assistant", "content": "it is 4"}]}, ("gsm.jsonl", 7))
    with pytest.raises(ValueError, match="gsm.jsonl:7.*assistant.*####"):
        get_task("gsm8k").check([ex(GSM, "q", "#### 4"), bad])


REGEX = "Convert natural language to regular expression."


def test_regex_exact_startswith_and_equivalence():
    task = get_task("regex")
    e = ex(REGEX, "q", "(.*dog.*)&(.*[0-9].*)")
    assert task.score("(.*dog.*)&(.*[0-9].*)", e) == {"exact": True, "startswith": True, "equivalent": True}
    swapped = task.score("(.*[0-9].*)&(.*dog.*)", e)
    assert swapped == {"exact": False, "startswith": False, "equivalent": True}
    assert task.score("(.*dog.*)&(.*[0-9].*)(.*dog.*)", e)["startswith"] is True
    assert task.score("(.*dog.*)|(.*[0-9].*)", e)["equivalent"] is False


def test_regex_equivalence_with_complement_and_repetition():
    assert equivalent("~(.*dog.*)", "~((.*dog.*)+)") is True
    assert equivalent("~(.*dog.*)", "~(.*truck.*)") is False
    assert equivalent("(dog){2,}", "dog(dog)+") is True
    assert equivalent("(dog){2,3}", "dogdog(dog)?") is True
    assert equivalent("[AEIOUaeiou].*", "[aeiouAEIOU](.*)") is True
    assert equivalent(r"\b(dog)\b", "dog") is True  # word boundaries are treated as empty (documented)
    assert equivalent("((dog)", "dog") is None  # unparseable: undecided, not wrong


def test_regex_equivalence_gives_up_within_its_time_limit():
    hard = "~(" + "&".join(f"(.*[{c}].*){{{n},}}" for c, n in zip("abcdef", range(3, 9), strict=True)) + ")"
    assert equivalent(hard, hard + "|x", time_limit=0.05) is None


NQ = "Answer the question below."


def test_nq_open_requires_the_answer_in_the_generation():
    task = get_task("nq_open")
    e = ex(NQ, "who wrote it", "Jane Austen; J. Austen")
    assert task.score("It was written by Jane Austen.", e)["contains"] is True
    assert task.score("JANE   austen!", e)["contains"] is True  # case, punctuation, spaces
    assert task.score("j austen", e)["contains"] is True  # "J. Austen" normalised
    assert task.score("Austen", e)["contains"] is False
    assert "reference_compatible" not in task.score("Austen", e)  # only when asked for
    # trivial generations: rejected by the default, accepted by the released code's reverse check
    for trivial in ("", "the", "Jane"):
        got = task.score(trivial, e, reference_compatible=True)
        assert got["contains"] is False and got["reference_compatible"] is True


@pytest.mark.parametrize("gen,answer,ok", [
    ("12", "2", False), ("in 1912", "1912", True), ("in 19120", "1912", False),  # whole words only
    ("the Beatles", "Beatles", True), ("Beatles", "The Beatles", True),  # articles dropped on both sides
    ("an apple a day", "apple", True), ("pineapple", "apple", False), ("theory", "the ory", False),
    ("U.S.A.", "usa", True), ("New York City", "new york", True), ("New Yorker", "new york", False),
])
def test_nq_open_squad_normalisation_and_whole_words(gen, answer, ok):
    assert get_task("nq_open").score(gen, ex(NQ, "q", answer))["contains"] is ok


def test_sentiment_label_prefix():
    task = get_task("sentiment")
    e = ex("Determine whether the comment is positive or negative", "great", "Very Good")
    assert task.score(" very good, I think", e)["label"] is True
    assert task.score("Good", e)["label"] is False


def test_hellaswag_ties_go_to_the_first_letter():
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    assert pick(logits) == ["B", "A", "D"]


def test_task_detection_and_unknown_task():
    assert detect_task(ex(GSM, "q", "#### 1")) == "gsm8k"
    assert detect_task(ex(REGEX, "q", "a")) == "regex"
    with pytest.raises(ValueError, match="cannot tell the task"):
        detect_task(ex("Be nice.", "q", "a"))
    with pytest.raises(ValueError, match="known tasks"):
        get_task("translation")


def test_every_shared_dataset_is_detected(shared_datasets):
    from llm_jepa.data import load_examples

    expected = {"synth_test": "regex", "gsm8k_test": "gsm8k", "spider_test": "spider", "nq_open_test": "nq_open",
                "hellaswag_test": "hellaswag", "rotten_tomatoes_test": "sentiment", "yelp_test": "sentiment"}
    for name, task in expected.items():
        assert detect_task(load_examples(shared_datasets / f"{name}.jsonl", 1)[0]) == task
