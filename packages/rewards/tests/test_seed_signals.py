"""The InstructBLIP-SCST seed's object and counting signals on its own worked examples, and the object
vocabulary file they read. Captions are written PTB-normalised, as the trainer passes them."""

from __future__ import annotations

import json

import pytest

from rsforge.rewards.configs import CountingConfig, SDEConfig
from rsforge.rewards.counting import CountAbsError, CountAccuracy, CountSignedError
from rsforge.rewards.objects import SceneDescriptionExhaustiveness
from rsforge.rewards.vocabulary import ObjectVocabulary, builtin_vocabulary, load_classes, reference_counts

# The seed README's qualitative example (RSICD test split): the caption of its best model, and the references.
TANKS_CAPTION = "six white storage tanks are near a road and some green meadows"
TANKS_REFS = ["there are seven white columnar tanks near a road with two tracks",
              "seven same cylinder storage tanks are placed on the grass between a forest and a road",
              "seven same cylinder storage tanks are placed on the grass between a forest and a road",
              "seven storage tanks stand alongside the straight road where two trucks are running",
              "seven white storage tanks in two lines are near some green trees"]


@pytest.fixture(scope="module")
def vocabulary():
    return ObjectVocabulary()


def test_the_vocabulary_file_ships_and_maps_synonyms(vocabulary):
    assert builtin_vocabulary().is_file() and "classes" in json.loads(builtin_vocabulary().read_text())
    one = {"airplane": ["plane", "airplane", "aircraft", "planes", "airplanes"],
           "storage tank": ["tank", "storage tank", "oil tanks", "storagetank", "storage tanks"],
           "ship": ["ship", "boats", "vessels"], "car": ["cars", "small vehicles"],
           "truck": ["large vehicle", "trucks"],
           "highway": ["freeway", "expressways"], "soccer field": ["soccer ball field", "football fields"],
           "parking lot": ["parking lot", "car park"], "park": ["parks"], "bare land": ["bareland", "bare land"],
           "baseball field": ["baseball diamond", "baseballfield"], "harbor": ["harbour", "port"]}
    for cls, names in one.items():
        for name in names:
            assert vocabulary.entities(name) == {cls}, name
    # The seed tells these apart ("mistakes a forest for meadows"), so they are separate classes.
    assert vocabulary.entities("trees forest grass meadow bushes") == {"tree", "forest", "grass", "meadow", "bush"}
    # Lemmas by rule, and words of a phrase alone name nothing.
    assert vocabulary.words("houses factories beaches grass tennis") == ["house", "factory", "beach", "grass", "tennis"]
    assert vocabulary.entities("the lot is bare") == set()


@pytest.mark.parametrize("labels", [
    # UCM-Captions classes (as words), DOTA-v2 and DIOR object labels (VRSBench), RSICD scene objects.
    "airplane baseball-diamond beach buildings chaparral forest freeway golf-course harbor intersection "
    "mobile-home overpass parking-lot river runway storage-tanks tennis-court",
    "plane ship storage-tank baseball-diamond tennis-court basketball-court ground-track-field harbor bridge "
    "large-vehicle small-vehicle helicopter roundabout soccer-ball-field swimming-pool container-crane airport helipad",
    "airplane airport baseballfield basketballcourt bridge chimney dam Expressway-Service-area Expressway-toll-station "
    "golffield groundtrackfield harbor overpass ship stadium storagetank tenniscourt trainstation vehicle windmill",
    "bareland beach bridge church desert farmland forest meadow mountain park pond port railway-station resort "
    "river school square stadium viaduct playground",
])
def test_the_vocabulary_covers_the_datasets_labels(vocabulary, labels):
    for label in labels.split():
        assert vocabulary.entities(label.replace("-", " ")), label


def test_a_vocabulary_file_of_ones_own(tmp_path):
    path = tmp_path / "objects.json"
    path.write_text(json.dumps({"classes": {"hangar": ["aircraft shed"], "tank": []}}))
    vocabulary = ObjectVocabulary(load_classes(path), {"solar panel": ["pv panel"]})
    assert vocabulary.entities("two aircraft sheds, a tank and pv panels") == {"hangar", "tank", "solar panel"}
    path.write_text(json.dumps({"classes": {"a": ["pool"], "b": ["pool"]}}))
    with pytest.raises(ValueError, match="'pool' names both"):
        ObjectVocabulary(load_classes(path))
    path.write_text(json.dumps({"objects": {}}))
    with pytest.raises(ValueError, match="'classes' mapping"):
        load_classes(path)


def test_sde_on_the_seeds_worked_example():
    sde = SceneDescriptionExhaustiveness(SDEConfig(name="sde"))
    references = [["there is a forest and a river", "there is a forest a river and a road"]]
    assert sde(["there is a forest"], references).item() == pytest.approx(1 / 3)
    assert sde(["forests by a river and roads"], references).item() == pytest.approx(1.0)  # lemmatised
    assert sde.entities("there is a forest a river and a road") == {"forest", "river", "road"}
    assert sde(["a lake"], [["there is no change"]]).item() == 0.0  # no ground-truth entity


def test_sde_reads_count_dictionaries():
    sde = SceneDescriptionExhaustiveness(SDEConfig(name="sde"))
    assert sde.reads_extras == {"object_counts"}
    refs = [["a road near the grass"]] * 3
    counts = [{"storage-tank": 7, "small_vehicle": 0}, None, {"Small-Vehicle": 2}]
    scores = sde([TANKS_CAPTION, TANKS_CAPTION, "cars on a road"], refs, {"object_counts": counts})
    # 1: road and storage tank of {road, grass, storage tank} (a zero count adds nothing); 2: road of
    # {road, grass}; 3: car and road of {road, grass, car}.
    assert scores.tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert sde([TANKS_CAPTION], refs[:1]).item() == pytest.approx(1 / 2)  # without extras, references only
    with pytest.raises(ValueError, match="1 entries for 2 candidates"):
        sde(["a", "b"], refs[:2], {"object_counts": counts[:1]})


def test_counts_words_digits_and_uncertain_quantities(vocabulary):
    assert vocabulary.counts("four planes and three buildings") == {"airplane": 4, "building": 3}
    assert vocabulary.counts("two new buildings and 3 houses") == {"building": 2, "house": 3}
    assert vocabulary.counts("twenty one cars and a pair of tennis courts") == {"car": 21, "tennis court": 2}
    assert vocabulary.counts(TANKS_CAPTION) == {"storage tank": 6, "meadow": None}
    # "a few", "several", "some", "many", "lots of": uncertain (None), not one; an article counts nothing.
    for quantity in ("a few", "several", "some", "many", "lots of"):
        assert vocabulary.counts(f"{quantity} new buildings near a road") == {"building": None}, quantity
    assert vocabulary.counts("two buildings and some buildings") == {"building": None}
    assert vocabulary.counts("a building was torn down and two of them remain") == {}
    assert vocabulary.counts("one of the buildings") == {}
    assert reference_counts(vocabulary, TANKS_REFS) == {"storage tank": 7.0, "truck": 2.0}


def test_counting_on_the_worked_example():
    caption, refs = ["four planes and three buildings"], [["five planes and one building"]]
    config = CountingConfig(name="counting")
    absolute, signed = CountAbsError(config), CountSignedError(config)
    # Errors caption - reference: planes 4 - 5 = -1, buildings 3 - 1 = +2.
    assert absolute.count_errors(caption[0], refs[0]) == {"airplane": -1.0, "building": 2.0}
    assert absolute.errors(caption[0], refs[0]) == pytest.approx((1.5, 0.5))
    assert absolute(caption, refs).item() == pytest.approx(-1.5)
    assert signed(caption, refs).item() == pytest.approx(-0.5)
    assert absolute(["five planes and one building"], refs).item() == 0.0


def test_six_storage_tanks_are_not_seven():
    config = CountingConfig(name="counting")
    absolute, signed, accuracy = CountAbsError(config), CountSignedError(config), CountAccuracy(config)
    assert absolute.errors(TANKS_CAPTION, TANKS_REFS) == pytest.approx((1.0, -1.0))  # one tank too few
    assert absolute([TANKS_CAPTION], [TANKS_REFS]).item() == pytest.approx(-1.0)
    assert signed([TANKS_CAPTION], [TANKS_REFS]).item() == pytest.approx(-1.0)
    assert accuracy([TANKS_CAPTION], [TANKS_REFS]).item() < 1.0


def test_uncertain_counts_are_left_out_of_the_errors():
    absolute = CountAbsError(CountingConfig(name="count_abs_error"))
    refs = ["seven storage tanks and two trucks"]
    assert absolute.count_errors("several storage tanks and three trucks", refs) == {"truck": 1.0}
    assert absolute.errors("a few storage tanks", refs) == (0.0, 0.0)  # nothing counted by both sides
    assert absolute.errors("a storage tank", ["a few storage tanks"]) == (0.0, 0.0)
