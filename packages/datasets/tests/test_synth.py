import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from rsforge.datasets import synth
from rsforge.datasets.prompts import GRID_CELLS, prompt_for
from rsforge.datasets.synth import SynthDatasetConfig, generate, load_synth

N, SIZE = 40, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "d", N, seed=0, size=SIZE, progress=False)


@pytest.fixture(scope="module")
def captions(dataset) -> list[dict]:
    return json.loads((dataset / "captions.json").read_text())["images"]


@pytest.fixture(scope="module")
def conversations(dataset) -> list[dict]:
    return json.loads((dataset / "conversations.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    one = _files(generate(tmp_path / "one", 12, seed=7, size=SIZE, progress=False))
    two = _files(generate(tmp_path / "two", 12, seed=7, size=SIZE, progress=False))
    assert one == two
    other = _files(generate(tmp_path / "other", 12, seed=8, size=SIZE, progress=False))
    assert other.keys() == one.keys()
    assert other["train/A/train_000001.png"] != one["train/A/train_000001.png"]
    assert other["captions.json"] != one["captions.json"]


def test_layout(dataset, captions):
    params = json.loads((dataset / "synth.json").read_text())
    assert {k: params[k] for k in ("n", "seed", "size", "version")} == {
        "n": N, "seed": 0, "size": SIZE, "version": synth.SYNTH_VERSION,
    }  # fmt: skip
    assert sum(params["splits"].values()) == N and params["splits"]["val"] == params["splits"]["test"] == 6
    for split in synth.SPLITS:
        names = (dataset / "list" / f"{split}.txt").read_text().split()
        assert len(names) == params["splits"][split]
        assert names[0] == f"{split}_000001.png"
        for sub in ("A", "B", "label"):
            assert sorted(p.name for p in (dataset / split / sub).iterdir()) == names
        prompts = (dataset / split / "prompts.txt").read_text().splitlines()
        assert [line.split("  ")[0] for line in prompts] == names
    with Image.open(dataset / "train" / "A" / "train_000001.png") as img:
        assert img.mode == "RGB" and img.size == (SIZE, SIZE)
    assert not list(dataset.parent.glob(".d.*")), "temporary folders left behind"


def test_captions_json_schema(captions):
    assert len(captions) == N
    assert [e["imgid"] for e in captions] == list(range(N))
    sentids = [s["sentid"] for e in captions for s in e["sentences"]]
    assert sentids == list(range(len(sentids)))
    for e in captions:
        assert set(e) == {"filepath", "filename", "split", "imgid", "sentids", "sentences", "changeflag"}
        assert e["filepath"] == e["split"] and e["filename"].startswith(e["split"] + "_")
        assert e["sentids"] == [s["sentid"] for s in e["sentences"]]
        for s in e["sentences"]:
            assert s["raw"].startswith(" ") and s["raw"].split() == s["tokens"] and s["imgid"] == e["imgid"]
        assert e["changeflag"] in (0, 1)


def test_references_are_three_to_five_distinct_levir_style(captions):
    vocabulary = set()
    for e in captions:
        raws = [s["raw"].strip() for s in e["sentences"]]
        assert 3 <= len(raws) <= 5 and len(set(raws)) == len(raws)
        for r in raws:
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", r), r
        vocabulary.update(t for s in e["sentences"] for t in s["tokens"])
    assert len(vocabulary) < 300


def test_masks_binary_and_nonempty_exactly_for_changed_pairs(dataset, captions):
    for e in captions:
        mask = np.asarray(Image.open(dataset / e["split"] / "label" / e["filename"]))
        assert mask.shape == (SIZE, SIZE) and set(np.unique(mask).tolist()) <= {0, 255}
        assert mask.any() == bool(e["changeflag"]), e["filename"]
        before = np.asarray(Image.open(dataset / e["split"] / "A" / e["filename"]), dtype=np.int16)
        after = np.asarray(Image.open(dataset / e["split"] / "B" / e["filename"]), dtype=np.int16)
        assert (before != after).any()  # illumination and noise differ even without change


def test_no_change_share(captions):
    share = sum(1 - e["changeflag"] for e in captions) / len(captions)
    assert 0.2 <= share <= 0.35
    for split in synth.SPLITS:  # every split has both kinds
        flags = {e["changeflag"] for e in captions if e["split"] == split}
        assert flags == {0, 1}


def test_no_change_captions_say_so(captions):
    for e in captions:
        if not e["changeflag"]:
            assert all(s["raw"].strip() in synth.language._NO_CHANGE for s in e["sentences"])


def test_qa_present_and_consistent(dataset, captions, conversations):
    by_id = {c["id"]: c for c in conversations}
    assert len(conversations) == 5 * N
    cell = "|".join(re.escape(c) for c in GRID_CELLS)
    grid = re.compile(rf"(buildings|roads|vegetation) \[('({cell})'(, '({cell})')*)\](; |$)")
    for e in captions:
        stem = e["filename"].removesuffix(".png")
        answers = {}
        for task in ("change_captioning", "binary_change", "counting", "grid_localization"):
            entry = by_id[f"{stem}_{task}"]
            assert entry["image"] == [f"{e['split']}/A/{e['filename']}", f"{e['split']}/B/{e['filename']}"]
            human, gpt = entry["conversations"]
            assert human == {"from": "human", "value": "<image>\n" + prompt_for(task)}
            assert gpt["from"] == "gpt"
            answers[task] = gpt["value"]
            for image in entry["image"]:
                assert (dataset / image).is_file()
        assert answers["change_captioning"] == e["sentences"][0]["raw"].strip()
        assert answers["binary_change"] == ("yes" if e["changeflag"] else "no")
        assert answers["counting"].isdigit()
        if e["changeflag"]:
            assert grid.match(answers["grid_localization"]), answers["grid_localization"]
        else:
            assert answers["grid_localization"] == "no change" and answers["counting"] == "0"
        turns = by_id[f"{stem}_multi_turn"]["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * 4
        assert sum("<image>" in t["value"] for t in turns) == 1


def test_counting_matches_grid_and_captions(captions, conversations):
    answers = {c["id"]: c["conversations"][1]["value"] for c in conversations}
    counts = []
    for e in captions:
        stem = e["filename"].removesuffix(".png")
        count = int(answers[f"{stem}_counting"])
        counts.append(count)
        if count:
            assert "buildings [" in answers[f"{stem}_grid_localization"]
            assert all(
                {"building", "buildings", "house", "houses"} & set(s["tokens"]) for s in e["sentences"]
            )
    assert max(counts) > 0, "no pair with built buildings"


def test_larger_size_works(tmp_path):
    out = generate(tmp_path / "big", 2, seed=1, size=256, val_frac=0, test_frac=0, progress=False)
    with Image.open(out / "train" / "A" / "train_000001.png") as img:
        assert img.size == (256, 256)


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        generate(foreign, 3, seed=0, size=SIZE, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_regenerates_over_an_earlier_dataset(tmp_path):
    out = generate(tmp_path / "d", 3, seed=0, size=SIZE, progress=False)
    generate(out, 4, seed=1, size=SIZE, progress=False)
    assert json.loads((out / "synth.json").read_text())["n"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synth.writer._make_pair

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synth.writer, "_make_pair", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "d", 10, seed=0, size=SIZE, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="size >= 32"):
        generate("unused", 3, seed=0, size=8)
    with pytest.raises(ValueError, match="val_frac"):
        generate("unused", 3, seed=0, val_frac=0.6, test_frac=0.5)


def test_load_synth_generates_once(tmp_path, monkeypatch):
    config = SynthDatasetConfig(n=10, seed=2, size=SIZE, root=str(tmp_path / "cache"))
    train = load_synth(config, "train")
    assert train and all("#" in s.id for s in train)  # one sample per reference for training
    val = load_synth(config, "val")
    assert val and all("#" not in s.id for s in val)

    def no_generate(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(synth.dataset, "generate", no_generate)
    assert len(load_synth(config, "train")) == len(train)
    with pytest.raises(ValueError, match="other parameters"):  # a named root is never regenerated
        load_synth(config.model_copy(update={"seed": 3}), "train")


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_synth(SynthDatasetConfig(n=4, size=SIZE), "test")
    assert (tmp_path / "data" / f"synth-n4-s0-{SIZE}px" / "synth.json").is_file()


def test_config_is_strict():
    assert SynthDatasetConfig().name == "synth"
    with pytest.raises(ValidationError):
        SynthDatasetConfig(n=10, sizee=64)
    with pytest.raises(ValidationError):
        SynthDatasetConfig(size=8)


def test_modules_import_without_torch():
    code = (
        "import sys, rsforge.datasets.prompts, rsforge.datasets.levir, rsforge.datasets.synth; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_named_root_with_other_parameters_is_not_regenerated(tmp_path):
    root = tmp_path / "mine"
    generate(root, n=12, seed=0, size=32, progress=False)
    before = (root / "captions.json").read_bytes()
    with pytest.raises(ValueError, match=r"other parameters .*'n': \(12, 600\)"):
        load_synth(SynthDatasetConfig(name="synth", root=str(root), size=32), "test")
    assert (root / "captions.json").read_bytes() == before
    assert load_synth(SynthDatasetConfig(name="synth", root=str(root), n=12, size=32), "test")
