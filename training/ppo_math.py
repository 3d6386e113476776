"""The PPO math on plain tensors (Schulman et al. 2017; Ziegler et al. 2019): masked statistics, log-probs and
entropy from logits, KL-penalised rewards, generalised advantage estimation, the clipped policy and value losses,
the KL controllers and the running moments of the scores. No models, no processes.

torch is imported inside the functions: nothing here runs without it, but importing the module must not need it.
"""

from __future__ import annotations

from collections.abc import Sequence


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
