from rsforge.core.hookspecs import hookimpl
from rsforge.rewards.configs import CiderDConfig


@hookimpl
def register_rewards(register):
    register("cider_d", factory="rsforge.rewards.cider:CiderD", config=CiderDConfig,
             description="CIDEr-D per sample (pycocoevalcap's Cider: clipped tf-idf cosine, length "
                         "penalty, x10); document frequencies from the batch or fixed by fit()",
             example={})
