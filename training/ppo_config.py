"""PPOConfig: every setting of a PPO run, checked before anything runs, and the settings a resumed run must share
with its checkpoint. Torch-free: the admin's launch form imports it."""

from __future__ import annotations

from dataclasses import dataclass, fields

from training.data import PROMPT_KINDS


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



# The settings a resumed run must share with its checkpoint; steps may grow, logging and eval cadence may change.
RESUME_MUST_MATCH = {
    field.name
    for field in fields(PPOConfig)
    if field.name not in ("output", "steps", "eval_every", "checkpoint_every", "eval_prompts")
}
