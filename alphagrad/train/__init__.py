"""Training: token data files, the training loop, checkpoints, evaluation, sampling, run records."""

from alphagrad.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    checkpoint_info,
    load_checkpoint,
    save_checkpoint,
)
from alphagrad.train.config import TrainConfig
from alphagrad.train.data import (
    BatchSampler,
    TokenDataset,
    iter_eval_batches,
    prepare,
    write_token_file,
)
from alphagrad.train.evaluate import evaluate, evaluate_full
from alphagrad.train.presets import PRESETS, Preset, get_preset
from alphagrad.train.run import RunDir, make_run_folder
from alphagrad.train.rundb import RunDB
from alphagrad.train.sampling import load_model, sample
from alphagrad.train.trainer import Trainer, TrainingDiverged, train

__all__ = [
    "PRESETS",
    "BatchSampler",
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "Preset",
    "RunDB",
    "RunDir",
    "TokenDataset",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "checkpoint_info",
    "evaluate",
    "evaluate_full",
    "get_preset",
    "iter_eval_batches",
    "load_checkpoint",
    "load_model",
    "make_run_folder",
    "prepare",
    "sample",
    "save_checkpoint",
    "train",
    "write_token_file",
]
