"""What the Hugging Face trainers of the reward model, DPO and SFT share: quiet libraries (the commands draw their own
progress bar), the common TRL trainer arguments and a callback that reports progress.

datasets, transformers and torch are imported inside the functions: the training jobs module imports the training
modules in the web process, which must not need them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def quiet_libraries() -> None:
    """The command draws its own progress bar; library progress bars and load reports would interleave with it."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def progress_callback(report: Callable[[int, int], None]):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            report(state.global_step, state.max_steps)

    return ProgressCallback()


def trainer_arguments(config, output: Path, *, train_items: int, evaluate: bool) -> dict:
    """The TRL trainer arguments shared by reward-model and DPO training (config: epochs, lr, batch_size,
    max_length, seed): CPU or GPU, an evaluation each epoch, about 50 log lines, no checkpoints, no reporting."""
    import torch

    use_cuda = torch.cuda.is_available()
    steps_per_epoch = -(-train_items // config.batch_size)
    return {
        "output_dir": str(output / "checkpoints"),
        "num_train_epochs": config.epochs,
        "learning_rate": config.lr,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "max_length": config.max_length,
        # TRL turns checkpointing on by default (under its old name); small models fit without it and run faster
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
        "use_cpu": not use_cuda,
        "bf16": use_cuda and torch.cuda.is_bf16_supported(),
        "eval_strategy": "epoch" if evaluate else "no",
        "logging_steps": max(1, round(steps_per_epoch * config.epochs) // 50),
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
    }
