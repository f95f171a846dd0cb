"""Which text of a conversation an instruction-reading bridge gets: the first user turn, or DeltaVLM's
dialogue text (its `dataset.py`: `' '.join([f" q: {t['question']} a: {t['answer']}" for t in all_turns[:i]])
.strip() + '  q: ' + question`, `<image>` removed, then LAVIS's `blip_caption` processor)."""

from rsforge.core.batch import INSTRUCTIONS, dialogue_questions, first_user_turns
from rsforge.core.sample import Turn

CHAT = [Turn("user", "<image>\nWhat changed?"), Turn("assistant", "Two houses (new)."),
        Turn("user", "Where are they?"), Turn("assistant", "In the north.")]


def test_first_turn_is_the_default():
    assert INSTRUCTIONS["first_turn"] is first_user_turns
    assert first_user_turns([CHAT]) == ["<image>\nWhat changed?"]


def test_dialogue_text_is_deltavlms():
    # Training: the last answer is the target, so the question it replies to is the current one.
    assert dialogue_questions([CHAT]) == ["q what changed? a two houses new q where are they?"]
    # Generation: the conversation ends with the question to answer; a first question stands alone.
    assert dialogue_questions([CHAT[:3], CHAT[:1], []]) == [
        "q what changed? a two houses new q where are they?", "what changed?", ""]


def test_dialogue_text_keeps_fifty_words():
    long = [Turn("user", " ".join(f"w{i}" for i in range(80)))]
    assert dialogue_questions([long])[0].split() == [f"w{i}" for i in range(50)]
