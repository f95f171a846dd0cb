"""rsforge rewards: reward functions for RL fine-tuning (SCST), registered through `register_rewards`.

Each reward maps `(candidates, references, extras)` to a float32 tensor of per-sample raw scores;
weighting and normalisation live with training (`rsforge.train.reward_set`).
"""
