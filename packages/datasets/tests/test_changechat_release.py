"""ChangeChat-105k read as released, on fixtures written here in its published layout and schemas.

Sources (github.com/hanlinwu/DeltaVLM): readme.md (the file names, the instruction record, the captioning
schema `{image_A, image_B, captions: [5 refs], changeflag}`, the `dataset/{annotations,images}` layout),
scripts/data_processing.ipynb (the 3-question dialogue record), dataset.py (the question templates in
`COCOCapEvalDataset`'s comments; `CaptionDataset`: one training sample per answer with its history),
infer_subtasks.py (the six test files and their types). Captions and the open question's text are ours.
"""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.datasets.changechat import CAPTION_PROMPT, question_type, read_changechat

# readme.md, "Each instruction record ... looks like:"
README_RECORD = {
    "id": 0,
    "image": ["train/A/train_000001.png", "train/B/train_000001.png"],
    "changeflag": 0,
    "conversations": [
        {"from": "human", "value": "<image> <image> Please briefly describe the changes in these two images."},
        {"from": "gpt", "value": "There is no difference."},
    ],
}
# scripts/data_processing.ipynb (the record in its docstring cell)
DIALOG_RECORD = {"id": 9, "image": ["train/A/train_000001.png", "train/B/train_000001.png"], "conversations": [{"from": "human", "value": "<image> <image> Please judge whether these two images have changed. Please answer yes or no."}, {"from": "gpt", "value": "No"}, {"from": "human", "value": "If changes have occurred, count the number of road and building changes separately."}, {"from": "gpt", "value": "No roads has changed, and no buildings has changed."}, {"from": "human", "value": "Based on the above analysis, please describe the changes of these two images in detail."}, {"from": "gpt", "value": "No change has occurred."}]}  # noqa: E501
# dataset.py, the prompts commented in COCOCapEvalDataset.__getitem__
BINARY_Q = "Please judge whether these two images have changed. Please answer yes or no."
COUNT_Q = "Please determine how many roads and buildings have changed?"
LOC_Q = ("Please indicate the locations where changes have occurred in the buildings and roads, using a 3x3 grid "
         "(namely, 'top', 'center', and 'bottom' vertically and 'left', 'center', 'right' horizontally).")  # fmt: skip


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def _pair(images: Path, split: str, n: int) -> list[str]:
    names = [f"{split}/{side}/{split}_{n:06d}.png" for side in "AB"]
    for name in names:
        _img(images / name)
    return names


def _ask(id_: int, image: list[str], question: str, answer: str, changeflag: int = 1) -> dict:
    return {"id": id_, "image": image, "changeflag": changeflag, "conversations": [
        {"from": "human", "value": f"<image> <image> {question}"}, {"from": "gpt", "value": answer}]}  # fmt: skip


def _release(tmp_path: Path) -> Path:
    """DeltaVLM's `dataset/` folder: the annotation files in annotations/, LEVIR-CC's images in images/."""
    dataset = tmp_path / "dataset"
    ann, images = dataset / "annotations", dataset / "images"
    ann.mkdir(parents=True)
    train = _pair(images, "train", 1)
    t1, t2 = _pair(images, "test", 1), _pair(images, "test", 2)
    files = {
        "train": [README_RECORD, DIALOG_RECORD],
        "train_loc": [_ask(0, train, LOC_Q, "roads ['top-center'] buildings ['center-center']")],
        "test": [{"image_A": t1[0], "image_B": t1[1], "changeflag": 1,
                  "captions": ["a road is built", "a new road appears", "a road was added .", "roads appear",
                               "a road crosses the scene"]}],
        "test_binary": [_ask(0, t1, BINARY_Q, "Yes"), _ask(1, t2, BINARY_Q, "No", changeflag=0)],
        "test_count": [_ask(0, t2, COUNT_Q, "there are no changes in roads or buildings", changeflag=0)],
        "test_loc": [_ask(0, t2, LOC_Q, "roads [] buildings []", changeflag=0)],
        # an open question that says "how many" is still open: the file decides
        "test_open": [_ask(0, t1, "How many lanes does the new road have?", "two lanes")],
        "test_dialog": [{**DIALOG_RECORD, "image": t2}],
    }
    for name, entries in files.items():
        (ann / f"changechat_105k_{name}.json").write_text(json.dumps(entries))
    return dataset


def test_every_test_file_and_both_schemas(tmp_path):
    samples = read_changechat(_release(tmp_path), "test")
    by_id = {s.id: s for s in samples}
    assert list(by_id) == ["test:test_000001", "test_binary:0", "test_binary:1", "test_count:0", "test_loc:0",
                           "test_open:0", "test_dialog:9#0", "test_dialog:9#1", "test_dialog:9#2"]  # fmt: skip
    caption = by_id["test:test_000001"]
    assert caption.task == "change_captioning" and caption.meta == {"question_type": "caption"}
    assert caption.prompt[0].text == CAPTION_PROMPT and len(caption.references) == 5 and caption.changed is True
    assert caption.images[0].endswith("dataset/images/test/A/test_000001.png")
    assert caption.images[1].endswith("dataset/images/test/B/test_000001.png")
    expected = {"test_binary:0": ("binary_change", "binary", "Yes"), "test_count:0": ("counting", "count",
                "there are no changes in roads or buildings"), "test_loc:0": ("grid_localization", "loc",
                "roads [] buildings []"), "test_open:0": ("change_open_qa", "open", "two lanes")}  # fmt: skip
    for id_, (task, kind, answer) in expected.items():
        s = by_id[id_]
        assert (s.task, s.meta["question_type"], s.answer, s.references) == (task, kind, answer, [answer])
        assert s.conversation[0].text.startswith("<image> <image> ")  # the markers stay in the text
    assert by_id["test_binary:1"].changed is False


def test_one_sample_per_answer_with_its_history(tmp_path):
    train = read_changechat(_release(tmp_path) / "annotations", "train")  # the annotations folder as root
    assert [s.id for s in train] == ["train:0", "train:9#0", "train:9#1", "train:9#2"]
    assert train[0].task == "change_captioning" and train[0].answer == "There is no difference."
    assert train[0].changed is False and train[1].changed is None  # the dialogue record has no changeflag
    dialog = train[1:]
    assert [len(s.conversation) for s in dialog] == [2, 4, 6]
    assert [s.meta["question_type"] for s in dialog] == ["binary", "count", "caption"]
    assert [s.task for s in dialog] == ["binary_change", "counting", "change_captioning"]
    turns = DIALOG_RECORD["conversations"]
    assert [t.text for t in dialog[2].conversation] == [t["value"] for t in turns]
    assert [t.role for t in dialog[2].conversation] == ["user", "assistant"] * 3
    assert dialog[1].prompt[-1].text == turns[2]["value"] and dialog[1].references == [turns[3]["value"]]
    assert all(s.images == train[0].images for s in train)


def test_train_loc_is_read_when_named(tmp_path):
    (s,) = read_changechat(_release(tmp_path), "train", file="changechat_105k_train_loc.json")
    assert s.id == "train_loc:0" and s.task == "grid_localization" and s.meta["question_type"] == "loc"


def test_question_types_from_deltavlm_wording():
    assert question_type(BINARY_Q) == "binary" and question_type(LOC_Q) == "loc"
    assert question_type(COUNT_Q) == "count" and question_type(DIALOG_RECORD["conversations"][2]["value"]) == "count"
    assert question_type("Please briefly describe the changes in these two images.") == "caption"
    assert question_type("What was built near the river?") == "open"


def test_bad_entries_are_logged_by_file_and_index_and_counted(tmp_path, caplog):
    dataset = _release(tmp_path)
    good = README_RECORD["image"]
    turns = README_RECORD["conversations"]
    entries = [
        README_RECORD,
        {**README_RECORD, "image": []},  # no images
        {**README_RECORD, "image": [good[0], "train/B/train_000404.png"]},  # missing image file
        {**README_RECORD, "conversations": turns[:1]},  # a question without an answer
        {**README_RECORD, "conversations": [turns[1], turns[0]]},  # gpt speaks first
        {**README_RECORD, "conversations": [turns[0], {"from": "gpt", "value": " "}]},  # empty answer
        {"id": 7, "image": good},  # neither conversations nor captions
    ]
    path = dataset / "annotations" / "changechat_105k_train.json"
    path.write_text(json.dumps(entries))
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        assert [s.id for s in read_changechat(dataset, "train")] == ["train:0"]
    for index in (1, 3, 4, 5, 6):
        assert f"{path} entry {index} " in caplog.text
    assert "train_000404.png: missing image" in caplog.text and f"{path} entry 2 " in caplog.text
    assert "no image pair" in caplog.text and "the last question has no answer" in caplog.text
    assert "turn 0: 'from' should be 'human', got 'gpt'" in caplog.text and "turn 1 has no 'value'" in caplog.text
    assert f"{path}: skipped 6 of 7 train samples" in caplog.text


def test_split_key_wins_over_the_file_name(tmp_path):
    dataset = _release(tmp_path)
    entries = [{**README_RECORD, "split": "val"}, {**README_RECORD, "id": 1}]
    (dataset / "annotations" / "changechat_105k_train.json").write_text(json.dumps(entries))
    assert [s.id for s in read_changechat(dataset, "train")] == ["train:1"]


def test_nothing_usable_is_an_error_naming_what_was_looked_for(tmp_path):
    dataset = _release(tmp_path)
    with pytest.raises(ValueError, match=r"no 'val' split \(looked for changechat_105k_val.json\); splits found: "
                                         r"test, train"):  # fmt: skip
        read_changechat(dataset, "val")
    with pytest.raises(ValueError, match=re.escape("conversations.json and ChangeChat-105k's changechat_105k_train*")):
        read_changechat(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match=r"none of the 1 test entries is usable .*images looked for under .*nowhere"):
        read_changechat(dataset, "test", file="changechat_105k_test_loc.json", images_root="nowhere")
    with pytest.raises(FileNotFoundError, match=r"empty/changechat_105k_train_loc\.json"):
        read_changechat(tmp_path / "empty", "train", file="changechat_105k_train_loc.json")
