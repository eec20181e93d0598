"""Training: typed configs, the feature cache, losses and the Accelerate trainer for the three stages."""
from .config import TrainConfig, load_train_config
from .trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "load_train_config"]
