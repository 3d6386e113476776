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
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from training.data import PROMPT_KINDS, PromptItem, file_sha256, load_prompts, split_prompts_by_tree
from training.policy import chat_prompt, load_policy
from training.reward import code_version, load_reward_model, quiet_libraries, score_replies

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"


@dataclass(frozen=True)
class PPOConfig:
    """Every knob of a PPO run. Batch sizes count episodes (prompt + reply) over all processes."""

    reward_model: str
    prompts: str
    output: str
    policy: str = ""
    steps: int = 40
    batch_size: int = 8
    mini_batch_size: int = 4
    ppo_epochs: int = 2
    lr: float = 2e-5
    kl_coef: float = 0.05
    adaptive_kl: bool = True
    target_kl: float = 6.0
    kl_horizon: int = 10_000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float = 1.0
    whiten_advantages: bool = True
    normalize_scores: bool = True
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 32
    max_prompt_length: int = 128
    prompt_kind: str = "root"
    eval_fraction: float = 0.1
    eval_prompts: int = 32
    eval_every: int = 10
    checkpoint_every: int = 10
    lora_rank: int = 0
    lora_alpha: int = 16
    seed: int = 42

    def check(self, world_size: int = 1) -> None:
        """A ValueError naming the first bad setting; nothing runs with one."""
        positive = ("steps", "batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens", "max_prompt_length")
        for name in positive + ("eval_prompts", "eval_every", "checkpoint_every", "kl_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("lr", "temperature", "target_kl", "cliprange", "cliprange_value", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.kl_coef < 0 or self.vf_coef < 0 or self.lora_rank < 0:
            raise ValueError("kl_coef, vf_coef and lora_rank must not be negative")
        if not 0 < self.top_p <= 1 or not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError("top_p must be in (0, 1], gamma and lam in [0, 1]")
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in (0, 1): held-out prompts measure the run")
        if self.prompt_kind not in PROMPT_KINDS:
            raise ValueError(f"prompt_kind must be one of {', '.join(PROMPT_KINDS)}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError("batch_size must be a multiple of mini_batch_size")
        if self.batch_size % world_size or self.mini_batch_size % world_size:
            raise ValueError(f"batch_size and mini_batch_size must be multiples of the {world_size} processes")


# --- PPO math on plain tensors -------------------------------------------------------------------------------------


def masked_mean(values, mask, dim=None):
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(values, mask, *, shift_mean: bool = True):
    """Zero mean, unit variance over the masked entries (the mean kept when shift_mean is False)."""
    import torch

    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def logprobs_from_logits(logits, tokens):
    import torch

    return torch.gather(logits.log_softmax(-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits):
    import torch

    distribution = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (distribution * logits).sum(-1)


def kl_penalised_rewards(scores, logprobs, ref_logprobs, mask, kl_coef: float):
    """Per-token rewards: ``-kl_coef * (log pi - log pi_ref)`` on every reply token, plus the score on the last one.

    Returns (rewards, kl) with kl the per-token estimate ``log pi - log pi_ref`` (zero outside the mask).
    """
    import torch

    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0]), last] += scores
    return rewards, kl


def gae_advantages(rewards, values, mask, *, gamma: float, lam: float):
    """Generalised advantage estimation over right-padded replies; returns (advantages, returns).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, with V = 0 after the
    reply's end, so the padding contributes nothing.
    """
    import torch

    rewards, values = rewards * mask, values * mask
    length = rewards.shape[1]
    advantage = torch.zeros_like(rewards[:, 0])
    reversed_advantages = []
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * advantage
        reversed_advantages.append(advantage)
    advantages = torch.stack(reversed_advantages[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, *, cliprange: float):
    """PPO's clipped surrogate ``max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))``; also the clip fraction and
    the approximate KL between the old and the new policy."""
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return loss, clip_fraction, approx_kl


def clipped_value_loss(values, old_values, returns, mask, *, cliprange_value: float):
    """Half the larger of the squared errors of the new value and of the value kept within eps of the old one."""
    import torch

    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped_values - returns) ** 2), mask)
    clip_fraction = masked_mean(((values - returns) ** 2 < (clipped_values - returns) ** 2).float(), mask)
    return loss, clip_fraction


class AdaptiveKLController:
    """Ziegler et al. (2019): beta grows when the KL overshoots the target and shrinks when it undershoots."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon


class RunningMoments:
    """Mean and standard deviation of every score seen so far (Chan et al.'s parallel update of a batch at a time)."""

    def __init__(self, mean: float = 0.0, var: float = 1.0, count: float = 1e-4):
        self.mean, self.var, self.count = mean, var, count

    def update(self, values: Sequence[float]) -> None:
        n = len(values)
        if not n:
            return
        batch_mean = sum(values) / n
        batch_var = sum((value - batch_mean) ** 2 for value in values) / n
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        return max(self.var, 1e-8) ** 0.5

    def state(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        return None


# --- processes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def processes_start() -> Processes:
    """One process, or the group torchrun describes in the environment (gloo on CPU, NCCL on GPUs)."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return Processes(device="cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
    else:  # processes share the cores: oversubscribed threads slow every one of them down
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world_size))))
    return Processes(rank=dist.get_rank(), world_size=world_size, device=f"cuda:{local_rank}" if cuda else "cpu")


def processes_stop(processes: Processes) -> None:
    import torch.distributed as dist

    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gathered(tensor, processes: Processes):
    """The tensor of every process, concatenated along the first dimension (same shape on each)."""
    import torch
    import torch.distributed as dist

    if not processes.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(processes.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def parameters_in_sync(parameters, processes: Processes) -> bool:
    """Whether every process holds the same weights (a cheap fingerprint: the sum of each parameter)."""
    import torch

    fingerprint = torch.stack([parameter.detach().double().sum() for parameter in parameters])
    every = gathered(fingerprint.unsqueeze(0), processes)
    return bool(torch.allclose(every, every[:1].expand_as(every), rtol=0, atol=1e-6))


def gradients_average(parameters, processes: Processes) -> None:
    import torch.distributed as dist

    if not processes.distributed:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= processes.world_size


# --- the trainer ---------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """One batch of episodes: ``sequences`` is [left-padded query | right-padded reply]."""

    items: list[PromptItem]
    sequences: object
    attention_mask: object
    response_mask: object
    query_width: int
    texts: list[str]


class PPOTrainer:
    def __init__(self, config: PPOConfig, *, processes: Processes | None = None):
        import torch

        self.config = config
        self.processes = processes or Processes()
        config.check(self.processes.world_size)
        self.device = torch.device(self.processes.device)
        torch.manual_seed(config.seed)  # the same initial weights (value head, LoRA) in every process
        self.policy, self.tokenizer = load_policy(config.policy)
        self.policy.generation_config.pad_token_id = self.tokenizer.pad_token_id
        self.reference = None
        if config.lora_rank:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
            )
            self.policy = get_peft_model(self.policy, lora)  # the reference is the policy with its adapter off
        else:
            self.reference, _ = load_policy(config.policy)
            self.reference.requires_grad_(False)
            self.reference.to(self.device).eval()
        self.policy.to(self.device).eval()  # eval: no dropout, so old and new log-probs of the same weights agree
        hidden_size = self.policy.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden_size, 1).to(self.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.parameters = [p for p in self.policy.parameters() if p.requires_grad] + list(
            self.value_head.parameters()
        )
        # the fused kernel: on a CPU the default per-tensor loop takes 0.55 s a step for 135M parameters, fused 0.09 s
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.lr, eps=1e-5, fused=self.device.type in ("cpu", "cuda")
        )
        self.kl_controller = (
            AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
            if config.adaptive_kl
            else FixedKLController(config.kl_coef)
        )
        self.reward_model, self.reward_tokenizer, self.reward_reading = load_reward_model(config.reward_model)
        self.reward_model.to(self.device).eval()
        items = load_prompts(config.prompts, kind=config.prompt_kind)
        self.prompt_ids = {
            item.message_id: self.tokenizer(chat_prompt(self.tokenizer, item.conversation), add_special_tokens=False)[
                "input_ids"
            ]
            for item in items
        }
        # A prompt cut short is a different question; one long prompt would also pad its whole batch: leave them out.
        fitting = [item for item in items if len(self.prompt_ids[item.message_id]) <= config.max_prompt_length]
        self.long_prompts_left_out = len(items) - len(fitting)
        self.train_prompts, self.eval_prompts = split_prompts_by_tree(
            fitting, eval_fraction=config.eval_fraction, seed=config.seed
        )
        if not self.train_prompts or not self.eval_prompts:
            raise ValueError(
                f"{config.prompts} gives {len(self.train_prompts)} training and {len(self.eval_prompts)} held-out "
                f"prompts of at most {config.max_prompt_length} tokens: PPO needs prompter messages in at least "
                "two trees"
            )
        self.eval_prompts = self.eval_prompts[: config.eval_prompts]
        self.score_moments = RunningMoments()
        self.step = 0
        self.history: list[dict] = []
        self.evaluations: list[dict] = []
        torch.manual_seed(config.seed + 1 + self.processes.rank)  # each process samples its own replies

    # the model ---------------------------------------------------------------------------------------------------

    def _forward(self, model, sequences, attention_mask, query_width: int, *, with_values: bool):
        """Log-probs (at the sampling temperature) of the reply tokens, their entropy, and the values if asked."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        output = model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=with_values,
            logits_to_keep=sequences.shape[1] - query_width + 1,  # the LM head only where reply tokens are predicted
        )
        logits = output.logits[:, :-1].float() / self.config.temperature
        logprobs = logprobs_from_logits(logits, sequences[:, query_width:])
        values = None
        if with_values:
            hidden = output.hidden_states[-1][:, query_width - 1 : -1].float()
            values = self.value_head(hidden).squeeze(-1)
        return logprobs, entropy_from_logits(logits.detach()), values

    def _reference_logprobs(self, sequences, attention_mask, query_width: int):
        import torch

        with torch.no_grad():
            if self.reference is not None:
                return self._forward(self.reference, sequences, attention_mask, query_width, with_values=False)[0]
            with self.policy.disable_adapter():
                return self._forward(self.policy, sequences, attention_mask, query_width, with_values=False)[0]

    def _queries(self, items: Sequence[PromptItem]):
        """Left-padded token ids of the chat prompts."""
        import torch

        encoded = [self.prompt_ids[item.message_id] for item in items]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def rollout(self, items: Sequence[PromptItem], *, greedy: bool = False) -> Rollout:
        """Replies to the prompts, ending at the first EOS (kept as the last reply token) or at max_new_tokens."""
        import torch
        from transformers import GenerationConfig

        input_ids, query_mask = self._queries(items)
        eos = self.tokenizer.eos_token_id
        generation = GenerationConfig(
            max_new_tokens=self.config.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else self.config.temperature,
            top_p=None if greedy else self.config.top_p,
            top_k=None if greedy else 0,  # sample from the whole distribution whose log-probs PPO uses
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        with torch.no_grad():
            sequences = self.policy.generate(
                input_ids=input_ids, attention_mask=query_mask, generation_config=generation
            )
        width = input_ids.shape[1]
        responses = sequences[:, width:]
        is_eos = responses == eos
        after_first_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        response_mask = (~after_first_eos).long()
        responses = responses.masked_fill(after_first_eos, self.tokenizer.pad_token_id)
        sequences = torch.cat([input_ids, responses], dim=1)
        texts = [
            self.tokenizer.decode(row[mask.bool() & (row != eos)], skip_special_tokens=True).strip()
            for row, mask in zip(responses, response_mask, strict=True)
        ]
        return Rollout(
            items=list(items),
            sequences=sequences,
            attention_mask=torch.cat([query_mask, response_mask], dim=1),
            response_mask=response_mask.float(),
            query_width=width,
            texts=texts,
        )

    def score(self, items: Sequence[PromptItem], texts: Sequence[str]) -> list[float]:
        """The reward model's score of each reply in its conversation, read with the reward model's own tokenizer."""
        pairs = [(item.conversation, text) for item, text in zip(items, texts, strict=True)]
        return score_replies(self.reward_model, self.reward_tokenizer, pairs, reading=self.reward_reading)

    # one PPO step -------------------------------------------------------------------------------------------------

    def _batch_items(self) -> list[PromptItem]:
        """This process's share of the step's prompts: a seeded shuffle of the training prompts, epoch after epoch."""
        per_process = self.config.batch_size // self.processes.world_size
        start = self.step * self.config.batch_size + self.processes.rank * per_process
        items = []
        for position in range(start, start + per_process):
            epoch, index = divmod(position, len(self.train_prompts))
            order = list(range(len(self.train_prompts)))
            random.Random(f"{self.config.seed}-{epoch}").shuffle(order)
            items.append(self.train_prompts[order[index]])
        return items

    def ppo_step(self) -> dict:
        import torch

        config = self.config
        started = time.monotonic()
        rollout = self.rollout(self._batch_items())
        generated = time.monotonic()
        scores = torch.tensor(self.score(rollout.items, rollout.texts), dtype=torch.float, device=self.device)
        all_scores = gathered(scores, self.processes)
        scored = time.monotonic()
        if config.normalize_scores:  # scores may spread far less than the KL penalty: put them on one scale
            self.score_moments.update(all_scores.tolist())
            scores = (scores - self.score_moments.mean) / self.score_moments.std

        mask = rollout.response_mask
        with torch.no_grad():
            old_logprobs, entropy, old_values = self._forward(
                self.policy, rollout.sequences, rollout.attention_mask, rollout.query_width, with_values=True
            )
            ref_logprobs = self._reference_logprobs(rollout.sequences, rollout.attention_mask, rollout.query_width)
            rewards, kl = kl_penalised_rewards(scores, old_logprobs, ref_logprobs, mask, self.kl_controller.value)
            advantages, returns = gae_advantages(rewards, old_values, mask, gamma=config.gamma, lam=config.lam)
            if config.whiten_advantages:
                advantages = masked_whiten(advantages, mask)

        losses = {"policy_loss": [], "value_loss": [], "clip_fraction": [], "value_clip_fraction": [], "approx_kl": []}
        per_process = rollout.sequences.shape[0]
        mini = config.mini_batch_size // self.processes.world_size
        for _ in range(config.ppo_epochs):
            for batch in torch.randperm(per_process).split(mini):
                # columns that are padding in every row of the minibatch change nothing but the cost
                start = rollout.query_width - int(rollout.attention_mask[batch, : rollout.query_width].sum(-1).max())
                logprobs, _, values = self._forward(
                    self.policy,
                    rollout.sequences[batch, start:],
                    rollout.attention_mask[batch, start:],
                    rollout.query_width - start,
                    with_values=True,
                )
                policy_loss, clip_fraction, approx_kl = clipped_policy_loss(
                    logprobs, old_logprobs[batch], advantages[batch], mask[batch], cliprange=config.cliprange
                )
                value_loss, value_clip_fraction = clipped_value_loss(
                    values, old_values[batch], returns[batch], mask[batch], cliprange_value=config.cliprange_value
                )
                self.optimizer.zero_grad(set_to_none=True)
                (policy_loss + config.vf_coef * value_loss).backward()
                gradients_average(self.parameters, self.processes)
                torch.nn.utils.clip_grad_norm_(self.parameters, config.max_grad_norm)
                self.optimizer.step()
                for name, value in zip(
                    losses, (policy_loss, value_loss, clip_fraction, value_clip_fraction, approx_kl), strict=True
                ):
                    losses[name].append(value.item())

        episode_kl = gathered(kl.sum(-1), self.processes)
        lengths = gathered(mask.sum(-1), self.processes)
        episode_entropy = gathered(masked_mean(entropy, mask, dim=-1), self.processes)
        kl_coef = self.kl_controller.value
        self.kl_controller.update(episode_kl.mean().item(), config.batch_size)
        self.step += 1
        finished = time.monotonic()
        stats = {
            "step": self.step,
            "reward_mean": all_scores.mean().item(),
            "reward_std": all_scores.std().item() if all_scores.numel() > 1 else 0.0,
            "kl": episode_kl.mean().item(),
            "kl_coef": kl_coef,
            "entropy": episode_entropy.mean().item(),
            "response_length": lengths.mean().item(),
            **{name: sum(values) / len(values) for name, values in losses.items()},
            "seconds": {
                "generate": round(generated - started, 3),
                "score": round(scored - generated, 3),
                "update": round(finished - scored, 3),
                "total": round(finished - started, 3),
            },
        }
        self.history.append(stats)
        return stats

    def evaluate(self) -> dict:
        """Greedy replies to the held-out prompts and their mean reward (deterministic: comparable across steps)."""
        texts: list[str] = []
        batch = max(1, self.config.batch_size // self.processes.world_size)
        for start in range(0, len(self.eval_prompts), batch):
            texts += self.rollout(self.eval_prompts[start : start + batch], greedy=True).texts
        rewards = self.score(self.eval_prompts, texts)
        evaluation = {"step": self.step, "reward_mean": sum(rewards) / len(rewards), "rewards": rewards, "texts": texts}
        self.evaluations.append({key: evaluation[key] for key in ("step", "reward_mean")})
        return evaluation

    # checkpoints ---------------------------------------------------------------------------------------------------

    def save_checkpoint(self, folder: Path) -> None:
        import torch
        from safetensors.torch import save_file

        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(partial / "policy")
        save_file(self.value_head.state_dict(), str(partial / "value_head.safetensors"))
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, partial / TRAINER_STATE
        )
        state = {
            "step": self.step,
            "kl_coef": self.kl_controller.value,
            "score_moments": self.score_moments.state(),
            "history": self.history,
            "evaluations": self.evaluations,
            "config": asdict(self.config),
        }
        (partial / "state.json").write_text(json.dumps(state, indent=2))
        partial.replace(folder)  # a run killed while saving leaves only a .partial folder, never a broken checkpoint

    def load_checkpoint(self, folder: Path) -> None:
        import torch
        from safetensors.torch import load_file

        state = json.loads((folder / "state.json").read_text())
        saved = {key: value for key, value in state["config"].items() if key in RESUME_MUST_MATCH}
        current = {key: value for key, value in asdict(self.config).items() if key in RESUME_MUST_MATCH}
        if saved != current:
            changed = sorted(key for key in current if saved.get(key) != current[key])
            raise ValueError(f"the checkpoint in {folder} was made with other settings: {', '.join(changed)}")
        if self.config.lora_rank:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.policy, load_file(str(folder / "policy" / "adapter_model.safetensors")))
        else:
            from transformers import AutoModelForCausalLM

            saved_policy = AutoModelForCausalLM.from_pretrained(folder / "policy")
            self.policy.load_state_dict(saved_policy.state_dict())
        self.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
        trainer_state = torch.load(folder / TRAINER_STATE, weights_only=True)
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.step = state["step"]
        self.kl_controller.value = state["kl_coef"]
        self.score_moments = RunningMoments(**state["score_moments"])
        self.history = state["history"]
        self.evaluations = state["evaluations"]
        if not self.processes.distributed:  # with several processes each one's sampling stream restarts from the seed
            torch.set_rng_state(trainer_state["torch_rng"])
        else:
            torch.manual_seed(self.config.seed + 1 + self.processes.rank + 7919 * self.step)


# The settings a resumed run must share with its checkpoint; steps may grow, logging and eval cadence may change.
RESUME_MUST_MATCH = {
    field.name
    for field in fields(PPOConfig)
    if field.name not in ("output", "steps", "eval_every", "checkpoint_every", "eval_prompts")
}


def latest_checkpoint(output: Path) -> Path | None:
    folders = sorted((output / CHECKPOINTS).glob("step-[0-9]*"), key=lambda path: int(path.name.split("-")[1]))
    folders = [folder for folder in folders if not folder.name.endswith(".partial")]
    return folders[-1] if folders else None


def reward_model_provenance(folder: str) -> dict:
    """What the reward model's own metrics.json says about where it came from."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return {"folder": str(Path(folder).resolve())}
    metrics = json.loads(path.read_text())
    return {
        "folder": str(Path(folder).resolve()),
        "data_file": metrics.get("data", {}).get("file"),
        "data_sha256": metrics.get("data", {}).get("sha256"),
        "held_out_accuracy": metrics.get("eval", {}).get("accuracy"),
        "held_out_interval": metrics.get("eval", {}).get("interval"),
        "held_out_pairs": metrics.get("eval", {}).get("pairs"),
        "length_rule_on_the_same_pairs": (metrics.get("eval", {}).get("length_rule") or {}).get("accuracy"),
        "base_model": metrics.get("config", {}).get("base_model"),
        "code_version": metrics.get("code_version"),
    }


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
        metrics = _write_outputs(trainer, before, after, output, seconds=time.monotonic() - started, in_sync=in_sync)
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


def _write_outputs(
    trainer: PPOTrainer, before: dict, after: dict, output: Path, *, seconds: float, in_sync: bool
) -> dict:
    import torch

    config = trainer.config
    policy = trainer.policy.merge_and_unload() if config.lora_rank else trainer.policy
    policy.save_pretrained(output, safe_serialization=True)
    trainer.tokenizer.save_pretrained(output)
    samples = [
        {
            "tree_id": item.tree_id,
            "message_id": item.message_id,
            "prompt": item.conversation[-1].text,
            "before": {"reply": before["texts"][index], "reward": before["rewards"][index]},
            "after": {"reply": after["texts"][index], "reward": after["rewards"][index]},
        }
        for index, item in enumerate(trainer.eval_prompts)
    ]
    (output / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False))
    (output / "samples_before.json").unlink(missing_ok=True)
    step_seconds = [row["seconds"]["total"] for row in trainer.history]
    cuda = torch.cuda.is_available()
    metrics = {
        "config": asdict(config),
        "data": {
            "file": str(Path(config.prompts).resolve()),
            "sha256": file_sha256(config.prompts),
            "train_prompts": len(trainer.train_prompts),
            "eval_prompts": len(trainer.eval_prompts),
            "long_prompts_left_out": trainer.long_prompts_left_out,
        },
        "reward_model": reward_model_provenance(config.reward_model),
        "code_version": code_version(),
        "device": "cuda" if cuda else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "processes": trainer.processes.world_size,
        "processes_in_sync": in_sync,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.parameters),
        "total_seconds": round(seconds, 2),
        "seconds_per_step": round(sum(step_seconds) / len(step_seconds), 3) if step_seconds else None,
        "held_out_reward": {"before": before["reward_mean"], "after": after["reward_mean"]},
        "evaluations": trainer.evaluations,
        "steps": trainer.history,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_ppo_curves(trainer.history, trainer.evaluations, output / "ppo_curves.png")
    _write_samples_markdown(samples, output / "samples.md")
    _write_model_card(metrics, output / "README.md")
    return metrics


def plot_ppo_curves(history: list[dict], evaluations: list[dict], path: Path) -> None:
    from training.reward_report import pyplot

    plt = pyplot()
    steps = [row["step"] for row in history]
    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    reward_axis = axes[0][0]
    means = [row["reward_mean"] for row in history]
    stds = [row["reward_std"] for row in history]
    reward_axis.plot(steps, means, label="training reward (sampled)")
    reward_axis.fill_between(
        steps, [m - s for m, s in zip(means, stds, strict=True)], [m + s for m, s in zip(means, stds, strict=True)],
        alpha=0.2,
    )
    reward_axis.plot([e["step"] for e in evaluations], [e["reward_mean"] for e in evaluations], "o-",
                     label="held-out reward (greedy)")
    reward_axis.set_title("Reward")
    reward_axis.legend()
    panels = [
        (axes[0][1], ("kl",), "KL to the reference (per reply)"),
        (axes[0][2], ("kl_coef",), "KL coefficient (adaptive)"),
        (axes[1][0], ("entropy",), "Entropy (per token)"),
        (axes[1][1], ("clip_fraction", "value_clip_fraction"), "Clip fractions"),
        (axes[1][2], ("value_loss",), "Value loss (reply length on the right)"),
    ]
    for axis, keys, title in panels:
        for key in keys:
            axis.plot(steps, [row[key] for row in history], label=key.replace("_", " "))
        axis.set_title(title)
        if len(keys) > 1:
            axis.legend()
    length_axis = axes[1][2].twinx()
    length_axis.plot(steps, [row["response_length"] for row in history], color="tab:orange", alpha=0.6)
    length_axis.set_ylabel("reply tokens")
    for axis in axes[1]:
        axis.set_xlabel("PPO step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _write_samples_markdown(samples: list[dict], path: Path) -> None:
    lines = ["# Held-out samples before and after PPO", "", "Greedy replies; reward from the reward model.", ""]
    for sample in samples:
        lines += [
            f"## {sample['message_id']}",
            "",
            "**Prompt:** " + sample["prompt"].replace("\n", " ")[:500],
            "",
            f"**Before** (reward {sample['before']['reward']:.3f}): " + sample["before"]["reply"].replace("\n", " "),
            "",
            f"**After** (reward {sample['after']['reward']:.3f}): " + sample["after"]["reply"].replace("\n", " "),
            "",
        ]
    path.write_text("\n".join(lines))


def _write_model_card(metrics: dict, path: Path) -> None:
    config, data, reward = metrics["config"], metrics["data"], metrics["reward_model"]
    held_out = metrics["held_out_reward"]
    lines = [
        "# PPO policy",
        "",
        f"A causal LM fine-tuned with PPO (`training/ppo.py`) from `{config['policy']}` against the reward model",
        f"`{reward['folder']}`, with a per-token KL penalty to the starting policy.",
        "",
        "## Held-out reward (greedy replies)",
        "",
        f"- before: {held_out['before']:.4f}",
        f"- after: {held_out['after']:.4f}",
        f"- held-out prompts: {data['eval_prompts']} (trees never used for training)",
        "",
        "## Data",
        "",
        f"- prompts file: `{data['file']}`",
        f"- sha256: `{data['sha256']}`",
        f"- training prompts: {data['train_prompts']} ({config['prompt_kind']} prompter messages)",
        "",
        "## Reward model",
        "",
    ]
    lines += [f"- {key.replace('_', ' ')}: `{value}`" for key, value in reward.items()]
    lines += ["", "## Hyperparameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in config.items() if key not in ("output",)]
    seconds = metrics["seconds_per_step"]
    lines += [
        "",
        "## Provenance",
        "",
        f"- code version: `{metrics['code_version'] or 'unknown (no git)'}`",
        f"- device: {metrics['device']}, {metrics['processes']} process(es)",
        f"- parameters: {metrics['parameters']:,} ({metrics['trainable_parameters']:,} trained)",
        f"- time: {metrics['total_seconds']} s in all, {seconds if seconds is not None else 'n/a'} s per PPO step",
        "",
        "![PPO curves](ppo_curves.png)",
        "",
        "Samples: `samples.md` (and `samples.json`).",
        "",
    ]
    path.write_text("\n".join(lines))
