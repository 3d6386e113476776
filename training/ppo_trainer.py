"""The PPO trainer: the policy (with LoRA or a frozen reference copy), its value head, the reward model and the
prompts; rollouts, scoring, one PPO step (``training.ppo_math`` on the rollout), greedy evaluation on held-out prompts
and checkpoints. ``training.ppo.train_ppo`` drives it; ``training.processes`` shares the work between processes.

torch, transformers, peft and safetensors are imported inside the methods: ``training.ppo`` is imported by the
training jobs module, and the web process imports that module without torch.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import PromptItem, load_prompts, split_prompts_by_tree
from training.policy import chat_prompt, load_policy
from training.ppo_config import RESUME_MUST_MATCH, PPOConfig
from training.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae_advantages,
    kl_penalised_rewards,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
)
from training.processes import Processes, gathered, gradients_average
from training.reward import load_reward_model, score_replies

TRAINER_STATE = "trainer_state.pt"


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
