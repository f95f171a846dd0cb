"""The kernel's own parts, registered through the same hooks as any plugin: dataset readers."""

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from rsforge.core.data.levir import LevirCCDatasetConfig
    from rsforge.core.data.synth import SynthDatasetConfig

    register("levir_cc", factory="rsforge.core.data.levir:load_levir_cc", config=LevirCCDatasetConfig,
             description="LEVIR-CC change captions JSON (+ LEVIR-CD label/ masks when present)")
    register("synth", factory="rsforge.core.data.synth:load_synth", config=SynthDatasetConfig,
             description="built-in synthetic bi-temporal scenes with masks, captions and QA")
