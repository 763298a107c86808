"""The Show-1 models: the video UNet shared by all four stages, and how to load it."""

from .loading import check_state_dict, load_unet
from .unet_3d_condition import (
    TRAINABLE_SETS,
    UNet3DConditionModel,
    UNet3DConditionOutput,
    temporal_attention_parameters,
)

__all__ = [
    "TRAINABLE_SETS",
    "UNet3DConditionModel",
    "UNet3DConditionOutput",
    "check_state_dict",
    "load_unet",
    "temporal_attention_parameters",
]
