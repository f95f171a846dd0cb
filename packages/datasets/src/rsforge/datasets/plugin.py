"""rsforge-datasets' hooks: the dataset readers and the `rsforge data` commands."""

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register("levir_cc", factory="rsforge.datasets.levir:load_levir_cc",
             config="rsforge.datasets.levir:LevirCCDatasetConfig",
             description="LEVIR-CC change captions JSON (+ LEVIR-CD label/ masks when present)")
    register("levir_cd", factory="rsforge.datasets.levir:load_levir_cd",
             config="rsforge.datasets.levir:LevirCDDatasetConfig",
             description="change masks in LEVIR-CD's layout (A/ B/ label/, per split or with list/*.txt)")
    register("levir_mci", factory="rsforge.datasets.levir:load_levir_mci",
             config="rsforge.datasets.levir:LevirMCIDatasetConfig",
             description="LEVIR-MCI (Change-Agent): LEVIR-CC captions + 3-class road/building change masks")
    register("second", factory="rsforge.datasets.semantic_change:load_second",
             config="rsforge.datasets.semantic_change:SecondDatasetConfig",
             description="SECOND semantic change: im1/ im2/ label1/ label2/, 7-class land cover per date")
    register("changechat", factory="rsforge.datasets.changechat:load_changechat",
             config="rsforge.datasets.changechat:ChangeChatDatasetConfig",
             description="ChangeChat-105k as DeltaVLM releases it (changechat_105k_*.json), one sample per "
                         "assistant turn with its history; or ChangeChat-style JSON")
    register("coco_captions", factory="rsforge.datasets.captions:load_coco_captions",
             config="rsforge.datasets.captions:CocoCaptionsDatasetConfig",
             description="image captions, COCO or Karpathy JSON (RSICD, UCM-Captions, Sydney, VRSBench)")
    register("rsvqa", factory="rsforge.datasets.rsvqa:load_rsvqa", config="rsforge.datasets.rsvqa:RsvqaDatasetConfig",
             description="RSVQA LR/HR questions, answers and images (question type kept)")
    register("class_folders", factory="rsforge.datasets.classification:load_class_folders",
             config="rsforge.datasets.classification:ClassFoldersDatasetConfig",
             description="scene classification, one folder per class (UCM, AID, EuroSAT)")
    register("eurosat_ms", factory="rsforge.datasets.multispectral:load_eurosat_ms",
             config="rsforge.datasets.multispectral:EurosatMSDatasetConfig",
             description="EuroSAT MS scenes: EuroSAT_MS/<Class>/<Class>_<n>.tif, 13-band Sentinel-2")
    register("oscd", factory="rsforge.datasets.multispectral:load_oscd",
             config="rsforge.datasets.multispectral:OscdDatasetConfig",
             description="OSCD as released: 13 Sentinel-2 band files per date (imgs_*_rect), stacked; cm labels")
    register("rsvg", factory="rsforge.datasets.grounding:load_rsvg",
             config="rsforge.datasets.grounding:RsvgDatasetConfig",
             description="visual grounding boxes, RSVG / DIOR-RSVG VOC-style XML")
    register("dota", factory="rsforge.datasets.dota:load_dota", config="rsforge.datasets.dota:DotaDatasetConfig",
             description="oriented boxes, DOTA v1.0/v1.5/v2.0 labelTxt polygons (or patches of split-dota)")
    register("synth", factory="rsforge.datasets.synth:load_synth", config="rsforge.datasets.synth:SynthDatasetConfig",
             description="built-in synthetic scenes with masks, captions, QA, classes and boxes")


@hookimpl
def register_commands(cli):
    from rsforge.datasets.cli import add_commands

    add_commands(cli)
