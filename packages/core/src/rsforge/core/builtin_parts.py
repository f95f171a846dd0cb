"""The kernel's own parts, registered through the same hooks as any plugin: dataset readers."""

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from rsforge.core.data.captions import CocoCaptionsDatasetConfig
    from rsforge.core.data.changechat import ChangeChatDatasetConfig
    from rsforge.core.data.classification import ClassFoldersDatasetConfig
    from rsforge.core.data.grounding import DotaDatasetConfig, RsvgDatasetConfig
    from rsforge.core.data.levir import LevirCCDatasetConfig
    from rsforge.core.data.rsvqa import RsvqaDatasetConfig
    from rsforge.core.data.synth import SynthDatasetConfig

    register("levir_cc", factory="rsforge.core.data.levir:load_levir_cc", config=LevirCCDatasetConfig,
             description="LEVIR-CC change captions JSON (+ LEVIR-CD label/ masks when present)")
    register("changechat", factory="rsforge.core.data.changechat:load_changechat", config=ChangeChatDatasetConfig,
             description="ChangeChat-style conversations JSON (multi-turn change QA)")
    register("coco_captions", factory="rsforge.core.data.captions:load_coco_captions",
             config=CocoCaptionsDatasetConfig,
             description="image captions, COCO or Karpathy JSON (RSICD, UCM-Captions, Sydney, VRSBench)")
    register("rsvqa", factory="rsforge.core.data.rsvqa:load_rsvqa", config=RsvqaDatasetConfig,
             description="RSVQA LR/HR questions, answers and images (question type kept)")
    register("class_folders", factory="rsforge.core.data.classification:load_class_folders",
             config=ClassFoldersDatasetConfig,
             description="scene classification, one folder per class (UCM, AID, EuroSAT)")
    register("rsvg", factory="rsforge.core.data.grounding:load_rsvg", config=RsvgDatasetConfig,
             description="visual grounding boxes, RSVG / DIOR-RSVG VOC-style XML")
    register("dota", factory="rsforge.core.data.grounding:load_dota", config=DotaDatasetConfig,
             description="oriented boxes, DOTA labelTxt polygons")
    register("synth", factory="rsforge.core.data.synth:load_synth", config=SynthDatasetConfig,
             description="built-in synthetic scenes with masks, captions, QA, classes and boxes")
