"""PPO fine-tuning of a causal LM policy against the reward model, as in InstructGPT (Ouyang et al. 2022).

One PPO step, with the names of the literature (Ziegler et al. 2019; Schulman et al. 2017):

1. rollout: sample a reply to a batch of training prompts (temperature, top-p, stop at EOS or the length limit);
2. score: the reward model reads the decoded reply with its own tokenizer and ``encode_reply`` (``training.reward``);
3. rewards: per-token KL penalty ``-beta * (log pi(a|s) - log pi_ref(a|s))`` against a frozen copy of the starting
   policy, plus the score on the reply's last token; beta follows an adaptive KL controller;
4. advantages: generalised advantage estimation (GAE) on a value head over the policy's last hidden state, whitened;
5. update: several epochs of minibatches with the clipped policy loss and the clipped value loss, gradients clipped.

The policy is evaluated greedily on held-out prompts (trees never used for training) before, during and after.
Data-parallel under ``torchrun``: every process rolls out its share of the batch and gradients are averaged
(gloo on CPU, NCCL on GPUs); process 0 evaluates and writes the output folder.

This module drives a run (``train_ppo``: resume, evaluate, step, checkpoint, write). Its parts:
``training.ppo_config`` (PPOConfig), ``training.ppo_math`` (the math on plain tensors), ``training.processes``
(the process group), ``training.ppo_trainer`` (the model, rollouts, one PPO step, checkpoints) and
``training.ppo_outputs`` (the output folder). torch loads inside the functions, so importing these modules does not
need it (tests/training/test_light_imports.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from training.ppo_config import PPOConfig
from training.ppo_outputs import write_outputs
from training.ppo_trainer import PPOTrainer
from training.processes import Processes, parameters_in_sync
from training.trainer_plumbing import quiet_libraries

CHECKPOINTS = "checkpoints"


def latest_checkpoint(output: Path) -> Path | None:
    folders = sorted((output / CHECKPOINTS).glob("step-[0-9]*"), key=lambda path: int(path.name.split("-")[1]))
    folders = [folder for folder in folders if not folder.name.endswith(".partial")]
    return folders[-1] if folders else None


def train_ppo(
    config: PPOConfig,
    *,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    processes: Processes | None = None,
) -> dict:
    """Run PPO for config.steps steps (from the latest checkpoint with resume), write the output folder (process 0)
    and return the metrics."""
    quiet_libraries()
    processes = processes or Processes()
    started = time.monotonic()
    output = Path(config.output)
    trainer = PPOTrainer(config, processes=processes)
    checkpoint = latest_checkpoint(output) if resume else None
    if resume and checkpoint is None:
        raise ValueError(f"nothing to resume: no checkpoint under {output / CHECKPOINTS}")
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    if trainer.step >= config.steps:
        raise ValueError(f"the checkpoint is at step {trainer.step}: ask for more --steps than that to go on")
    output.mkdir(parents=True, exist_ok=True)

    before = _evaluate_on_main(trainer, processes) if checkpoint is None else None
    if before is not None:
        (output / "samples_before.json").write_text(json.dumps(before, indent=2))
    while trainer.step < config.steps:
        stats = trainer.ppo_step()
        if trainer.step % config.eval_every == 0 and trainer.step < config.steps:
            evaluation = _evaluate_on_main(trainer, processes)
            if evaluation is not None:
                stats["held_out_reward"] = evaluation["reward_mean"]
        if on_step is not None and processes.main:
            on_step(stats)
        if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps and processes.main:
            trainer.save_checkpoint(output / CHECKPOINTS / f"step-{trainer.step:06d}")
    after = _evaluate_on_main(trainer, processes)
    in_sync = parameters_in_sync(trainer.parameters, processes)
    metrics: dict = {}
    if processes.main:
        before = json.loads((output / "samples_before.json").read_text())
        metrics = write_outputs(trainer, before, after, output, seconds=time.monotonic() - started, in_sync=in_sync)
    if processes.distributed:  # leave together: a process that tears its group down early aborts the others
        import torch.distributed as dist

        dist.barrier()
    return metrics


def step_line(stats: dict, steps: int) -> str:
    line = (
        f"step {stats['step']}/{steps}  reward {stats['reward_mean']:.3f} ± {stats['reward_std']:.3f}  "
        f"kl {stats['kl']:.3f} (coef {stats['kl_coef']:.4f})  entropy {stats['entropy']:.3f}  "
        f"clip {stats['clip_fraction']:.3f}  value loss {stats['value_loss']:.4f}  "
        f"length {stats['response_length']:.1f}  {stats['seconds']['total']:.1f} s"
    )
    if "held_out_reward" in stats:
        line += f"  held-out reward {stats['held_out_reward']:.3f}"
    return line


def _evaluate_on_main(trainer: PPOTrainer, processes: Processes) -> dict | None:
    import torch.distributed as dist

    evaluation = trainer.evaluate() if processes.main else None
    if processes.distributed:
        dist.barrier()
    return evaluation
