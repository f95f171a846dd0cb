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
    register("changechat", factory="rsforge.datasets.changechat:load_changechat",
             config="rsforge.datasets.changechat:ChangeChatDatasetConfig",
             description="ChangeChat-style conversations JSON (multi-turn change QA)")
    register("coco_captions", factory="rsforge.datasets.captions:load_coco_captions",
             config="rsforge.datasets.captions:CocoCaptionsDatasetConfig",
             description="image captions, COCO or Karpathy JSON (RSICD, UCM-Captions, Sydney, VRSBench)")
    register("rsvqa", factory="rsforge.datasets.rsvqa:load_rsvqa", config="rsforge.datasets.rsvqa:RsvqaDatasetConfig",
             description="RSVQA LR/HR questions, answers and images (question type kept)")
    register("class_folders", factory="rsforge.datasets.classification:load_class_folders",
             config="rsforge.datasets.classification:ClassFoldersDatasetConfig",
             description="scene classification, one folder per class (UCM, AID, EuroSAT)")
    register("rsvg", factory="rsforge.datasets.grounding:load_rsvg",
             config="rsforge.datasets.grounding:RsvgDatasetConfig",
             description="visual grounding boxes, RSVG / DIOR-RSVG VOC-style XML")
    register("dota", factory="rsforge.datasets.grounding:load_dota",
             config="rsforge.datasets.grounding:DotaDatasetConfig",
             description="oriented boxes, DOTA labelTxt polygons")
    register("synth", factory="rsforge.datasets.synth:load_synth", config="rsforge.datasets.synth:SynthDatasetConfig",
             description="built-in synthetic scenes with masks, captions, QA, classes and boxes")


@hookimpl
def register_commands(cli):
    from rsforge.datasets.cli import add_commands

    add_commands(cli)
