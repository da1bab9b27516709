"""Stage 2, models: the project's SE architectures, model specs (timm, torchvision), checkpoints, training."""

from analysis.models.architectures import ARCHITECTURES, NoSqueezeExcite, SqueezeExcite, build_model, se_resnet

__all__ = ["ARCHITECTURES", "NoSqueezeExcite", "SqueezeExcite", "build_model", "se_resnet"]
