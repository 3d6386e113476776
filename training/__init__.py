"""Export readers, the reward model, PPO and training runs."""
