"""Deterministic synthetic bi-temporal scenes with known changes: the embedded default dataset.

Each pair is a top-down scene (textured land, roads, vegetation, ponds, buildings with shadows)
drawn twice, "before" (A) and "after" (B). Between the dates some buildings are built or
demolished, a road is added or vegetation is cleared; about a quarter of the pairs have no change
(only the illumination and sensor noise differ). Each pair gets a 0/255 change mask, 3-5 reference
captions in LEVIR-CC style, and QA (yes/no, counting, DeltaVLM 3x3 grid). As in LEVIR-CD, the
mask marks the changed objects (building footprints, the new road, the cleared vegetation), not
the shadows that come and go with buildings.

The captions name counts and 3x3-grid locations, so a model that sees the change can beat a fixed
caption. Every random draw comes from numpy Generators seeded from `seed` (one per pair, seeded
with (`seed`, pair index)), so the same arguments give byte-identical files.

Besides the pairs, every index gets two single-image scenes, each from its own seeded generator:
a land-cover scene whose class (residential, forest, water, farmland, bareland, meadow, in turn)
decides its content, for scene classification and captioning; and an objects scene (buildings,
some of them rotated, roads, trees, ponds) for grounding (a described building's box), oriented
boxes (every building's 4-corner polygon) and RSVQA-style questions (presence, count, comparison).

Layout written by `generate`, each part in a public format its reader reads:

    out/{train,val,test}/{A,B,label}/<split>_000001.png   out/{train,val,test}/prompts.txt  (LEVIR-CD)
    out/list/{train,val,test}.txt    out/captions.json (LEVIR-CC)    out/conversations.json (ChangeChat)
    out/scenes/<class>/<split>_000001.png   out/scenes/list/<split>.txt   (class folders)
    out/scenes/captions.json                                             (COCO captions, `split` field)
    out/objects/images/<id>.png   out/objects/{train,val,test}.txt       (shared by the three below)
    out/objects/labelTxt/<id>.txt (DOTA)   out/objects/Annotations/<id>.xml (RSVG)
    out/objects/synth_split_<split>_{questions,answers,images}.json      (RSVQA)
    out/synth.json

Modules: `drawing` (textures, roads, buildings, fields), `pairs` (a scene before and after its
changes), `language` (captions and QA), `single_image` (land-cover and object scenes), `writer`
(`generate`: every layout, atomically), `dataset` (the registered `synth` dataset).
"""

from rsforge.datasets.common import SPLITS
from rsforge.datasets.synth.dataset import SynthDatasetConfig, load_synth
from rsforge.datasets.synth.single_image import LAND_COVER
from rsforge.datasets.synth.writer import MIN_SIZE, NO_CHANGE_FRACTION, SYNTH_VERSION, generate, synth_params

__all__ = [
    "LAND_COVER", "MIN_SIZE", "NO_CHANGE_FRACTION", "SPLITS", "SYNTH_VERSION", "SynthDatasetConfig", "generate",
    "load_synth", "synth_params",
]
