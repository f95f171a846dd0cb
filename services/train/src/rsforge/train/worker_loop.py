"""The per-worker training loop that Ray Train runs on every worker.

Each worker rebuilds the model from the recipe (plain data) with its own installed plugins, reads
its shard of the training samples, and runs the pure-torch steps (`rsforge.train.steps`) stage by stage. Every
`checkpoint_every` optimizer steps (or every epoch) all workers report one merged checkpoint: rank 0
writes model + optimizer + scheduler + position (stage, epoch, next batch, step) + history, every rank
its own RNG state. A restarted worker group resumes at the next batch of the same epoch, so its loss
curve continues the interrupted one step for step.

What a step logs (the losses, the SCST rewards) is averaged over all ranks, so the history and the loss
that ranks checkpoints describe the whole batch. Each rank's output goes to `logs/worker-rank<N>.log`
in the run directory; the driver shows progress from the per-step `metrics.jsonl` (`rsforge.train.console`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader, DistributedSampler

from rsforge.core.batch import Batch
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe, StageConfig, parse_recipe
from rsforge.core.sample import Sample
from rsforge.datasets.torch_dataset import EpochSampler, SampleDataset, collate, read_sample_mask
from rsforge.train.feature_cache import FeatureCache
from rsforge.train.run_log import MetricsLog, redirect_output
from rsforge.train.steps import (
    build_optimizer,
    build_scheduler,
    check_precision,
    evaluation_loss,
    make_grad_scaler,
    mean_across_ranks,
    objective_parameters,
    rng_state,
    seed_everything,
    set_rng_state,
    train_step,
    unreachable_parameters,
)

MODEL_DIR = "model"
STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.jsonl"
FEATURE_CACHE_DIR = "feature_cache"
LOG_DIR = "logs"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


@dataclass
class FailOnce:
    """Fault injection for tests: worker `rank` exits hard (as a crashed process would) when it reaches
    optimizer step `step`, once: the marker file records that it happened."""

    rank: int
    step: int
    marker: str

    def check(self, rank: int, step: int) -> None:
        if rank == self.rank and step == self.step and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(step))
            os._exit(1)


def stages_of(recipe: Recipe) -> list[StageConfig]:
    return list(recipe.train.stages) or [StageConfig(kind="sft", epochs=recipe.train.epochs)]


def one_per_image(samples: list[Sample]) -> list[Sample]:
    """One sample per (images, prompt), holding the references of all its samples: a captioning split lists
    an image once per reference caption, and an SCST epoch should roll out on each image once (questions
    about one image stay apart: their prompts differ)."""
    merged: dict[tuple, Sample] = {}
    for sample in samples:
        answered = sample.conversation[-1].role == "assistant"
        prompt = tuple((t.role, t.text) for t in (sample.conversation[:-1] if answered else sample.conversation))
        key = (tuple(sample.images), sample.task, prompt)
        answer = [sample.conversation[-1].text] if answered else []
        refs = list(sample.references) or answer
        if key in merged:
            kept = merged[key]
            merged[key] = replace(kept, references=list(dict.fromkeys([*kept.references, *refs])))
        else:
            merged[key] = replace(sample, references=refs)
    return list(merged.values())


def probe_indices(samples: list[Sample]) -> list[int]:
    """The samples a probe batch needs to meet every kind of target the data has: the first one, and the
    first with a mask."""
    return list(dict.fromkeys([0, next((i for i, s in enumerate(samples) if s.mask), 0)]))


def ddp_settings(model: RSForgeModel, probe: Batch, samples: list[Sample]) -> dict:
    """Freeze the parameters no loss reaches on `probe` and return DistributedDataParallel's keywords:
    only a mask head that sits idle on batches without masks needs DDP's search for unused parameters
    (the search costs an extra pass over the graph every step)."""
    frozen = unreachable_parameters(model, probe)
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    if frozen:
        print(f"frozen {len(frozen)} parameter tensors that no loss reaches: {', '.join(frozen[:3])}"
              + (" ..." if len(frozen) > 3 else ""), flush=True)
    trains = [any(p.requires_grad for p in head.parameters()) for head in model.mask_heads]
    return {"find_unused_parameters": any(trains) and any(s.mask is None for s in samples)}


@dataclass
class Shard:
    """This rank's share of a stage's training samples and how many optimizer steps an epoch makes."""

    dataset: SampleDataset
    sampler: DistributedSampler
    steps_per_epoch: int


class CachedSampleDataset(SampleDataset):
    """Items without decoded images (placeholders of the right shape): the features come from the cache."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        size = self.image_size
        images = torch.zeros(len(sample.images), self.channels, size, size)
        return {"images": images, "sample": sample, "mask": read_sample_mask(sample, size)}


def make_collate(cache: FeatureCache | None):
    if cache is None:
        return collate

    def collate_with_features(items: list[dict]) -> Batch:
        return replace(collate(items), features=cache.features([item["sample"].images for item in items]))

    return collate_with_features


class Trainer:
    """One worker's run: stages -> epochs -> optimizer steps, with checkpoint/restore of the position."""

    def __init__(self, config: dict) -> None:
        self.plugins = PluginManager()
        self.recipe = parse_recipe(config["recipe"], self.plugins.registry)
        self.cfg = self.recipe.train
        self.stages = stages_of(self.recipe)
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.run_dir = Path(config["run_dir"])
        self.fail_once = FailOnce(**config["fail_once"]) if config.get("fail_once") else None
        seed_everything(self.cfg.seed)  # identical initial weights on every worker
        self.model = RSForgeModel.from_recipe(self.recipe, self.plugins)
        self.device = ray.train.torch.get_device()
        check_precision(self.cfg.precision, self.device)
        self.scaler = make_grad_scaler(self.cfg.precision, self.device)

        self.cache = None
        if self.cfg.feature_cache:
            root = self.run_dir / FEATURE_CACHE_DIR if self.cfg.feature_cache is True else Path(self.cfg.feature_cache)
            self.cache = FeatureCache(root, self.model)
        self.dataset_cls = CachedSampleDataset if self.cache is not None else SampleDataset
        # With train.crop the val loss is taken on crops too (the same ones every time: the epoch never
        # moves), so it measures the model at the native scale it trains at, not on squashed thumbnails.
        self.val_dataset = self.dataset_cls(config.get("val_samples") or [], self.model.image_size,
                                            self.model.interpolation, crop=self.cfg.crop, seed=self.cfg.seed,
                                            channels=self.model.in_chans)
        if self.cfg.checkpoint_metric == "val_loss" and len(self.val_dataset) == 0:
            raise ValueError("train.checkpoint_metric: val_loss needs a val split with samples")
        self.collate = make_collate(self.cache)
        self.per_worker = max(self.cfg.batch_size // self.world, 1)
        self.shards = {"all": self._shard(config["samples"])}
        if any(s.kind == "scst" for s in self.stages):
            self.shards["scst"] = self._shard(one_per_image(config["samples"]))
        self.dataset = self.shards["all"].dataset
        self.rewards = None
        if self.cfg.grad_accum_steps > 1 and any(s.kind == "scst" for s in self.stages):
            raise ValueError("train.grad_accum_steps: an scst stage steps once per batch (its K rollouts per input "
                             "are its accumulation); use 1, or a larger batch_size / num_samples")

    def _shard(self, samples: list[Sample]) -> Shard:
        # training views only (crops, augmentation; the recipe refuses them with the feature cache); the
        # val dataset above reads whole images, as evaluation does
        dataset = self.dataset_cls(samples, self.model.image_size, self.model.interpolation, crop=self.cfg.crop,
                                   augment=self.cfg.augment, seed=self.cfg.seed, channels=self.model.in_chans)
        sampler = EpochSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.cfg.seed)
        accum = self.cfg.grad_accum_steps
        steps = len(sampler) // self.per_worker // accum
        if steps == 0:
            raise ValueError(f"{len(dataset)} training samples make no optimizer step of {accum} x "
                             f"{self.per_worker} samples per worker (train.batch_size / grad_accum_steps)")
        return Shard(dataset, sampler, steps)

    def shard(self, stage: StageConfig) -> Shard:
        return self.shards["scst" if stage.kind == "scst" else "all"]

    # ---- stages -------------------------------------------------------------------------------

    def stage_optimizer(self, index: int):
        stage = self.stages[index]
        only = None
        # The assembler already refused stages the model cannot run (a mask stage without a mask head,
        # an scst stage without rewards or continuation log-probs).
        if stage.kind == "mask":
            probe = next(b for b in self._probe_batches() if b.mask_valid.any())
            only = objective_parameters(self.model, probe.to(self.device))
        if stage.kind == "scst":
            self._setup_rewards()
        optimizer = build_optimizer(self.model, self.cfg, lr=stage.lr or self.cfg.lr, only=only)
        steps = stage.epochs * self.shard(stage).steps_per_epoch
        scheduler = build_scheduler(optimizer, self.cfg, total_steps=steps)
        return optimizer, scheduler

    def _probe_batches(self):
        loader = DataLoader(self.dataset, batch_size=self.per_worker, collate_fn=self.collate)
        yield from loader
        raise ValueError("a mask stage needs training samples with masks; none has one")

    def _setup_rewards(self) -> None:
        if self.rewards is not None:
            return
        from rsforge.train.reward_set import RewardSet

        references = [list(s.references) for s in self.dataset.samples if s.references]
        self.rewards = RewardSet.from_recipe(self.recipe, self.plugins, references)

    def step(self, ddp, stage: StageConfig, micro_batches: list[Batch], optimizer, scheduler) -> dict[str, float]:
        batches = [b.to(self.device) for b in micro_batches]
        if stage.kind == "scst":
            from rsforge.train.scst import scst_step

            (batch,) = batches  # grad_accum_steps is 1 for SCST (checked at start)
            return scst_step(ddp, batch, optimizer, scheduler, self.rewards, stage, grad_clip=self.cfg.grad_clip,
                             precision=self.cfg.precision, scaler=self.scaler)
        return train_step(ddp, batches, optimizer, scheduler, grad_clip=self.cfg.grad_clip, kind=stage.kind,
                          precision=self.cfg.precision, scaler=self.scaler)

    # ---- checkpoints ----------------------------------------------------------------------------

    def save(self, ddp, optimizer, scheduler, position: dict, history: list[dict], metrics: dict) -> None:
        # Every rank's generators go to rank 0, which alone writes the checkpoint: it is whole the moment
        # rank 0's report lands, however late another worker's files would have arrived before it died.
        states = [None] * self.world
        if self.world > 1:
            torch.distributed.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        if self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            self.model.save_pretrained(directory / MODEL_DIR)
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "position": position}
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
            if self.rewards is not None:  # running reward statistics normalise the next rewards
                state["rewards"] = self.rewards.state_dict()
            torch.save(state, directory / STATE_FILE)
            (directory / HISTORY_FILE).write_text(json.dumps(history))
            for rank, generators in enumerate(states):
                torch.save(generators, directory / rng_file(rank))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"checkpoint_{position['step']:07d}")

    def restore(self) -> tuple[dict, list[dict], dict | None, dict | None]:
        """(position, history, train state, this rank's RNG state) of the latest checkpoint, if any."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return {"stage": 0, "epoch": 0, "batch": 0, "step": 0}, [], None, None
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            restored = RSForgeModel.from_pretrained(directory / MODEL_DIR, plugins=self.plugins)
            self.model.load_state_dict(restored.state_dict())
            state = torch.load(directory / STATE_FILE, weights_only=True)
            history = json.loads((directory / HISTORY_FILE).read_text())
            rng_path = directory / rng_file(self.rank)
            # A resume with more workers than before: the new ranks start from fresh generators.
            rng = torch.load(rng_path, weights_only=True) if rng_path.is_file() else None
        return state["position"], history, state, rng

    # ---- the loop -------------------------------------------------------------------------------

    def val_loss(self, stage: StageConfig) -> float:
        loader = DataLoader(self.val_dataset, batch_size=self.cfg.batch_size, collate_fn=self.collate)
        kind = "sft" if stage.kind == "scst" else stage.kind
        return evaluation_loss(self.model, (b.to(self.device) for b in loader), kind=kind,
                               precision=self.cfg.precision)

    def prepare(self, model: RSForgeModel):
        """Freeze what no loss reaches and wrap the model in DistributedDataParallel."""
        samples = self.dataset.samples
        probe = self.collate([self.dataset[i] for i in probe_indices(samples)]).to(self.device)
        kwargs = ddp_settings(model, probe, samples)
        return ray.train.torch.prepare_model(model, move_to_device=False, parallel_strategy_kwargs=kwargs)

    def run(self) -> None:
        redirect_output(self.run_dir / LOG_DIR / f"worker-rank{self.rank}.log")
        position, history, state, rng = self.restore()
        log = MetricsLog(self.run_dir / METRICS_FILE, position["step"]) if self.rank == 0 else None
        seed_everything(self.cfg.seed + 1000 * (self.rank + 1))  # per-worker streams (sampling, dropout)
        if rng is not None:
            set_rng_state(rng)
        ddp = self.prepare(self.model.to(self.device))
        accum, every = self.cfg.grad_accum_steps, self.cfg.checkpoint_every
        step = position["step"]
        epochs_before = [sum(s.epochs for s in self.stages[:i]) for i in range(len(self.stages))]
        total_steps = sum(s.epochs * self.shard(s).steps_per_epoch for s in self.stages)
        interval_losses: list[float] = []
        for index in range(position["stage"], len(self.stages)):
            stage = self.stages[index]
            shard = self.shard(stage)
            optimizer, scheduler = self.stage_optimizer(index)
            first_epoch = 0
            if state is not None and index == position["stage"]:
                first_epoch = position["epoch"]
                # A checkpoint taken at the end of a stage points at the next one, whose optimizer starts afresh.
                if position["optimizer_stage"] == index:
                    optimizer.load_state_dict(state["optimizer"])
                    scheduler.load_state_dict(state["scheduler"])
                if self.scaler is not None and "scaler" in state:
                    self.scaler.load_state_dict(state["scaler"])
                if self.rewards is not None and "rewards" in state:
                    self.rewards.load_state_dict(state["rewards"])
            for epoch in range(first_epoch, stage.epochs):
                resume_at = position["batch"] if (index, epoch) == (position["stage"], position["epoch"]) else 0
                shard.sampler.set_epoch(epochs_before[index] + epoch)
                # The epoch's order is a pure function of (seed, epoch): skipping the micro-batches already
                # trained on lands exactly where the checkpoint was taken, without reading their images.
                indices = list(shard.sampler)[: shard.steps_per_epoch * accum * self.per_worker]
                loader = DataLoader(shard.dataset, batch_size=self.per_worker, collate_fn=self.collate,
                                    sampler=indices[resume_at * self.per_worker:])
                micro: list[Batch] = []
                batch_index = resume_at
                for batch in loader:
                    micro.append(batch)
                    batch_index += 1
                    if len(micro) < accum:
                        continue
                    losses = mean_across_ranks(self.step(ddp, stage, micro, optimizer, scheduler))
                    micro = []
                    step += 1
                    interval_losses.append(losses["loss"])
                    record = {"step": step, "stage": index + 1, "kind": stage.kind, "epoch": epoch + 1,
                              "stage_step": epoch * shard.steps_per_epoch + batch_index // accum,
                              "stage_steps": stage.epochs * shard.steps_per_epoch,
                              "samples": self.per_worker * self.world * accum,
                              "lr": scheduler.get_last_lr()[0], "time": time.time(), **losses}
                    history.append(record)
                    if log is not None:
                        log.write(record)
                    if self.fail_once is not None:
                        self.fail_once.check(self.rank, step)
                    end_of_epoch = batch_index == shard.steps_per_epoch * accum
                    if (every and step % every == 0) or step == total_steps or (not every and end_of_epoch):
                        nxt = {"stage": index, "epoch": epoch, "batch": batch_index, "step": step,
                               "optimizer_stage": index}
                        if end_of_epoch:
                            nxt.update(epoch=epoch + 1, batch=0)
                            if epoch + 1 == stage.epochs:
                                nxt.update(stage=index + 1, epoch=0)
                        metrics = {"step": step, "stage": index + 1, "epoch": epoch + 1,
                                   "loss": sum(interval_losses) / len(interval_losses)}
                        if self.cfg.checkpoint_metric == "val_loss" and self.rank == 0:  # Ray ranks by rank 0
                            metrics["val_loss"] = self.val_loss(stage)
                        self.save(ddp, optimizer, scheduler, nxt, history, metrics)
                        interval_losses = []
            state = None
        if log is not None:
            log.close()
        if self.rewards is not None:
            self.rewards.close()


def train_loop_per_worker(config: dict) -> None:
    Trainer(config).run()
