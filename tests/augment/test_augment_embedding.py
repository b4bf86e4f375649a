"""The ``embedding`` strategy on the real all-MiniLM-L6-v2 (30 sentences), and with a student folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import needs_minilm
from dsembed.augment import mine_pairs
from dsembed.data import PairDataset

TOPICS = {
    "cooking": ["She is baking bread in the oven.", "He fried eggs for breakfast.", "The chef chopped onions.",
                "They roasted a chicken for dinner.", "A cook stirs the soup in a pot."],
    "football": ["The striker scored a late goal.", "The goalkeeper saved a penalty.", "Fans cheered in the stadium.",
                 "The referee showed a red card.", "The team won the league title."],
    "weather": ["Heavy rain is expected tomorrow.", "A storm hit the coast last night.", "It will be sunny and warm.",
                "Snow covered the mountain roads.", "Strong winds knocked down trees."],
}


def _train() -> PairDataset:
    s1, s2 = [], []
    for sentences in TOPICS.values():  # each topic: sentence 0-1, 2-3 labelled (4 is left alone)
        s1 += [sentences[0], sentences[2]]
        s2 += [sentences[1], sentences[3]]
    return PairDataset(s1, s2, np.ones(len(s1), np.float32))


@needs_minilm
def test_embedding_neighbours_stay_on_topic_with_real_minilm() -> None:
    extra = [s for sentences in TOPICS.values() for s in sentences[4:]]
    extra += ["The baker sells fresh bread.", "The midfielder passed the ball.", "Fog made the morning cold.",
              "Thunder and lightning all night.", "Dessert was a chocolate cake.", "The coach praised the players.",
              "Hail damaged the cars.", "Pasta boiled in salted water.", "The match ended in a draw.",
              "Temperatures fell below zero.", "Grilled fish with lemon.", "The captain lifted the trophy."]
    mined = mine_pairs(_train(), strategies=["embedding"], per_sentence=1, extra_sentences=extra,
                       encoder="all-MiniLM-L6-v2")
    assert mined.record["pool_size"] == 27 and mined.record["settings"]["encoder"] == "base:all-MiniLM-L6-v2"
    topic_of = {s: t for t, sentences in TOPICS.items() for s in sentences}
    same = [topic_of[a] == topic_of[b] for a, b in mined.pairs.pairs() if a in topic_of and b in topic_of]
    assert len(same) >= 5 and np.mean(same) >= 0.8  # nearest neighbours by cosine share the topic
    labelled = set(_train().pairs())
    assert all(a != b and (a, b) not in labelled and (b, a) not in labelled for a, b in mined.pairs.pairs())
    again = mine_pairs(_train(), strategies=["embedding"], per_sentence=1, extra_sentences=extra,
                       encoder="all-MiniLM-L6-v2")
    assert again.pairs.pairs() == mined.pairs.pairs()


def test_embedding_strategy_takes_a_student_folder(student_dir: Path) -> None:
    mined = mine_pairs(_train(), strategies=["embedding"], per_sentence=2, encoder=str(student_dir))
    assert mined.record["settings"]["encoder"] == f"student:{student_dir}"
    assert mined.record["per_strategy"]["embedding"]["kept"] == len(mined) > 0


@needs_minilm
def test_cross_embedding_neighbours_are_answers_on_the_questions_topic() -> None:
    """Cross pairing with real MiniLM: each question's neighbours come from the answer side, on its topic."""
    questions = ["Who scored the goal in the match?", "What is baked in the oven?", "Will it rain tomorrow?"]
    answers = [s for sentences in TOPICS.values() for s in sentences]
    qa = PairDataset(questions, [TOPICS["football"][0], TOPICS["cooking"][0], TOPICS["weather"][0]],
                     np.ones(3, np.float32))
    mined = mine_pairs(qa, strategies=["embedding"], per_sentence=2, extra_sentences=answers[1:5] + answers[6:10]
                       + answers[11:], encoder="all-MiniLM-L6-v2", pairing="cross")
    topic_of = {s: t for t, sentences in TOPICS.items() for s in sentences}
    wanted = dict(zip(questions, ["football", "cooking", "weather"], strict=True))
    assert len(mined) == 6 and all(a in wanted and b in topic_of for a, b in mined.pairs.pairs())
    assert np.mean([topic_of[b] == wanted[a] for a, b in mined.pairs.pairs()]) >= 5 / 6
