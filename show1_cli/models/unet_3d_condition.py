"""The Show-1 video UNet (`UNet3DConditionModel` in every showlab `unet/config.json`).

DeepFloyd IF's pixel UNet (ModelScope's latent UNet for sr2) with a temporal convolution after every ResNet
and a temporal attention after every spatial attention, built from diffusers' pieces so that the showlab
checkpoints load with their parameter names unchanged and compute what the original computes.

Input and output are videos, `(batch, channels, frames, height, width)`. Inside, frames are folded into the
batch video-major, `(batch * frames, channels, height, width)`, for the spatial layers; the temporal layers
unfold them. Conditioning is computed once per video and repeated per frame:

1. timestep -> sinusoidal projection -> time MLP,
2. + noise level (`class_embed_type: "timestep"`, sr1) through the same projection and its own MLP,
3. + attention-pooled raw text states (`addition_embed_type: "text"`, IF),
4. `time_embedding_act_fn` on the sum,
5. text states -> `encoder_hid_proj` (T5 4096 -> `cross_attention_dim`) for cross attention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, AttnAddedKVProcessor, AttnProcessor
from diffusers.models.embeddings import TextTimeEmbedding, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from diffusers.utils import BaseOutput
from torch import nn

from ..choices import TRAINABLE_SETS
from .unet_3d_blocks import (
    ResnetSettings,
    SimpleAttentionSettings,
    TransformerAttentionSettings,
    get_down_block,
    get_mid_block,
    get_up_block,
)

# The input temporal transformer (`transfromer_in_opt`) is always this size, whatever the config says.
TRANSFORMER_IN_HEADS = 8
TRANSFORMER_IN_HEAD_DIM = 64
TRANSFORMER_IN_NORM_GROUPS = 32


@dataclass
class UNet3DConditionOutput(BaseOutput):
    """`sample`: `(batch, out_channels, frames, height, width)`; with 6 output channels the first 3 are the
    predicted noise and the last 3 the learned variance values."""

    sample: torch.Tensor


def _per_block(value, count: int, name: str) -> list:
    """A config value given once or per down block, as a list of one value per down block."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"`{name}` has {len(value)} entries but the UNet has {count} down blocks.")
        return list(value)
    return [value] * count


class UNet3DConditionModel(ModelMixin, AttentionMixin, ConfigMixin):
    r"""The Show-1 3D UNet: a conditional video UNet taking noisy videos, timesteps and text states.

    The config keys are those of diffusers' `UNet2DConditionModel` (as the showlab checkpoints store them)
    plus `transfromer_in_opt` (misspelled as in the checkpoints), which adds a temporal transformer right
    after `conv_in`. Defaults are those of diffusers' 2D condition UNet (the original's), so a config that
    omits a key builds what the original builds. Keys that no Show-1 model uses (other `time_embedding_type`, `class_embed_type` or
    `addition_embed_type` values, `dual_cross_attention`) are accepted only with their neutral values.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["norm"]
    _no_split_modules = ["ResnetBlock2D", "TemporalConvLayer", "Attention", "TransformerTemporalModel"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ),
        mid_block_type: str | None = "UNetMidBlock3DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
        ),
        only_cross_attention: bool | tuple[bool, ...] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        dropout: float = 0.0,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int | tuple[int, ...] = 1280,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        dual_cross_attention: bool = False,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        resnet_skip_time_act: bool = False,
        resnet_out_scale_factor: float = 1.0,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        time_embedding_act_fn: str | None = None,
        timestep_post_act: str | None = None,
        time_cond_proj_dim: int | None = None,
        conv_in_kernel: int = 3,
        conv_out_kernel: int = 3,
        projection_class_embeddings_input_dim: int | None = None,
        class_embeddings_concat: bool = False,
        mid_block_only_cross_attention: bool | None = None,
        cross_attention_norm: str | None = None,
        addition_embed_type_num_heads: int = 64,
        transfromer_in_opt: bool = False,
    ):
        super().__init__()
        self.sample_size = sample_size
        num_blocks = len(down_block_types)
        if len(up_block_types) != num_blocks or len(block_out_channels) != num_blocks:
            raise ValueError(
                f"`down_block_types` ({num_blocks}), `up_block_types` ({len(up_block_types)}) and "
                f"`block_out_channels` ({len(block_out_channels)}) must have the same length."
            )
        if dual_cross_attention:
            raise ValueError("`dual_cross_attention` is not used by any Show-1 model and is not supported.")
        if time_embedding_type != "positional":
            raise ValueError(f"`time_embedding_type` {time_embedding_type!r} is not supported (only 'positional').")
        if addition_embed_type not in (None, "text"):
            raise ValueError(f"`addition_embed_type` {addition_embed_type!r} is not supported (only None or 'text').")

        # `attention_head_dim` is the head size of IF-style attention but, as in diffusers, the number of
        # heads of ModelScope-style attention unless `num_attention_heads` is given.
        head_dims = _per_block(attention_head_dim, num_blocks, "attention_head_dim")
        num_heads = _per_block(num_attention_heads or attention_head_dim, num_blocks, "num_attention_heads")
        layers = _per_block(layers_per_block, num_blocks, "layers_per_block")
        cross_dims = _per_block(cross_attention_dim, num_blocks, "cross_attention_dim")
        transformer_layers = _per_block(transformer_layers_per_block, num_blocks, "transformer_layers_per_block")
        if mid_block_only_cross_attention is None:
            mid_block_only_cross_attention = only_cross_attention if isinstance(only_cross_attention, bool) else False
        cross_only = _per_block(only_cross_attention, num_blocks, "only_cross_attention")

        # input
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=conv_in_kernel, padding=(conv_in_kernel - 1) // 2)
        if transfromer_in_opt:
            self.transformer_in = TransformerTemporalModel(
                num_attention_heads=TRANSFORMER_IN_HEADS,
                attention_head_dim=TRANSFORMER_IN_HEAD_DIM,
                in_channels=block_out_channels[0],
                num_layers=1,
                norm_num_groups=TRANSFORMER_IN_NORM_GROUPS,
            )
        else:
            self.transformer_in = None

        # embeddings
        time_embed_dim = time_embedding_dim or block_out_channels[0] * 4
        timestep_input_dim = block_out_channels[0]
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(
            timestep_input_dim,
            time_embed_dim,
            act_fn=act_fn,
            post_act_fn=timestep_post_act,
            cond_proj_dim=time_cond_proj_dim,
        )
        self._init_encoder_hid_proj(encoder_hid_dim, encoder_hid_dim_type, cross_dims[0])
        self.class_embedding = self._build_class_embedding(
            class_embed_type,
            num_class_embeds,
            projection_class_embeddings_input_dim,
            act_fn,
            timestep_input_dim,
            time_embed_dim,
        )
        if addition_embed_type == "text":
            self.add_embedding = TextTimeEmbedding(
                encoder_hid_dim if encoder_hid_dim is not None else cross_dims[0],
                time_embed_dim,
                num_heads=addition_embed_type_num_heads,
            )
        else:
            self.add_embedding = None
        self.time_embed_act = get_activation(time_embedding_act_fn) if time_embedding_act_fn is not None else None
        blocks_time_embed_dim = time_embed_dim * 2 if class_embeddings_concat else time_embed_dim

        def resnet_settings(output_scale_factor: float) -> ResnetSettings:
            return ResnetSettings(
                temb_channels=blocks_time_embed_dim,
                eps=norm_eps,
                groups=norm_num_groups,
                act_fn=act_fn,
                time_scale_shift=resnet_time_scale_shift,
                output_scale_factor=output_scale_factor,
                skip_time_act=resnet_skip_time_act,
                dropout=dropout,
            )

        def attention_settings(head_dim, heads, cross_dim, transformer_depth, cross_only_):
            simple = SimpleAttentionSettings(
                head_dim=head_dim,
                cross_attention_dim=cross_dim,
                only_cross_attention=cross_only_,
                cross_attention_norm=cross_attention_norm,
            )
            transformer = TransformerAttentionSettings(
                num_heads=heads,
                cross_attention_dim=cross_dim,
                transformer_layers=transformer_depth,
                use_linear_projection=use_linear_projection,
                only_cross_attention=cross_only_,
                upcast_attention=upcast_attention,
            )
            return dict(simple_attention=simple, transformer_attention=transformer)

        # down
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            self.down_blocks.append(
                get_down_block(
                    block_type,
                    in_channels=input_channel,
                    out_channels=output_channel,
                    num_layers=layers[i],
                    add_downsample=i < num_blocks - 1,
                    resnet=resnet_settings(resnet_out_scale_factor),
                    downsample_padding=downsample_padding,
                    **attention_settings(head_dims[i] or output_channel, num_heads[i], cross_dims[i], transformer_layers[i], cross_only[i]),
                )
            )

        # mid
        self.mid_block = get_mid_block(
            mid_block_type,
            in_channels=block_out_channels[-1],
            resnet=resnet_settings(mid_block_scale_factor),
            **attention_settings(
                head_dims[-1] or block_out_channels[-1],
                num_heads[-1],
                cross_dims[-1],
                transformer_layers[-1],
                mid_block_only_cross_attention,
            ),
        )

        # up: mirrored, except that IF-style head sizes keep the down-block index (as in the original).
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        reversed_heads = list(reversed(num_heads))
        reversed_layers = list(reversed(layers))
        reversed_cross_dims = list(reversed(cross_dims))
        reversed_transformer_layers = list(reversed(transformer_layers))
        reversed_cross_only = list(reversed(cross_only))
        output_channel = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_output_channel, output_channel = output_channel, reversed_channels[i]
            input_channel = reversed_channels[min(i + 1, num_blocks - 1)]
            self.up_blocks.append(
                get_up_block(
                    block_type,
                    in_channels=input_channel,
                    prev_output_channel=prev_output_channel,
                    out_channels=output_channel,
                    num_layers=reversed_layers[i] + 1,
                    add_upsample=i < num_blocks - 1,
                    resnet=resnet_settings(resnet_out_scale_factor),
                    **attention_settings(
                        head_dims[i] or output_channel,
                        reversed_heads[i],
                        reversed_cross_dims[i],
                        reversed_transformer_layers[i],
                        reversed_cross_only[i],
                    ),
                )
            )
        self.num_upsamplers = num_blocks - 1

        # out
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=conv_out_kernel, padding=(conv_out_kernel - 1) // 2)

    def _init_encoder_hid_proj(self, encoder_hid_dim, encoder_hid_dim_type, cross_attention_dim):
        if encoder_hid_dim_type is None and encoder_hid_dim is not None:
            encoder_hid_dim_type = "text_proj"
            self.register_to_config(encoder_hid_dim_type=encoder_hid_dim_type)
        if encoder_hid_dim_type == "text_proj":
            if encoder_hid_dim is None:
                raise ValueError("`encoder_hid_dim` is required with `encoder_hid_dim_type: text_proj`.")
            self.encoder_hid_proj = nn.Linear(encoder_hid_dim, cross_attention_dim)
        elif encoder_hid_dim_type is None:
            self.encoder_hid_proj = None
        else:
            raise ValueError(f"`encoder_hid_dim_type` {encoder_hid_dim_type!r} is not supported (only 'text_proj').")

    @staticmethod
    def _build_class_embedding(
        class_embed_type, num_class_embeds, projection_input_dim, act_fn, timestep_input_dim, time_embed_dim
    ) -> nn.Module | None:
        if class_embed_type is None:
            return nn.Embedding(num_class_embeds, time_embed_dim) if num_class_embeds is not None else None
        if class_embed_type == "timestep":  # the noise level of the super-resolution models
            return TimestepEmbedding(timestep_input_dim, time_embed_dim, act_fn=act_fn)
        if class_embed_type == "identity":
            return nn.Identity()
        if class_embed_type == "projection":
            if projection_input_dim is None:
                raise ValueError("`class_embed_type: projection` needs `projection_class_embeddings_input_dim`.")
            return TimestepEmbedding(projection_input_dim, time_embed_dim)
        raise ValueError(f"`class_embed_type` {class_embed_type!r} is not supported.")

    # ------------------------------------------------------------------------------------ attention

    def set_default_attn_processor(self) -> None:
        """Use the plain (non-SDPA) processors: added-KV for IF-style attention, classic for the rest."""
        self.set_attn_processor(
            {
                f"{name}.processor": AttnAddedKVProcessor() if module.added_kv_proj_dim is not None else AttnProcessor()
                for name, module in self.named_modules()
                if isinstance(module, Attention)
            }
        )

    # -------------------------------------------------------------------------------------- forward

    def _batched(self, value: torch.Tensor | float | int, batch_size: int, device: torch.device) -> torch.Tensor:
        """A timestep or noise level given as a number, a 0-d tensor or a (batch,) tensor, as (batch,)."""
        if not torch.is_tensor(value):
            dtype = torch.float64 if isinstance(value, float) else torch.int64
            if device.type == "mps":
                dtype = torch.float32 if dtype == torch.float64 else torch.int32
            value = torch.tensor([value], dtype=dtype, device=device)
        value = value.to(device).reshape(-1)
        if value.shape[0] not in (1, batch_size):
            raise ValueError(f"Expected 1 or {batch_size} timesteps/noise levels, got {value.shape[0]}.")
        return value.expand(batch_size)

    def _embed(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        class_labels,
        timestep_cond: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-video conditioning embedding and the text states for cross attention."""
        batch_size = sample.shape[0]
        t_emb = self.time_proj(self._batched(timestep, batch_size, sample.device)).to(dtype=sample.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)

        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("This UNet needs `class_labels` (the noise level of the low-resolution input).")
            if self.config.class_embed_type == "timestep":
                class_labels = self.time_proj(self._batched(class_labels, batch_size, sample.device))
                class_labels = class_labels.to(dtype=sample.dtype)
            class_emb = self.class_embedding(class_labels).to(dtype=sample.dtype)
            emb = torch.cat([emb, class_emb], dim=-1) if self.config.class_embeddings_concat else emb + class_emb

        if self.add_embedding is not None:  # pooled from the raw text states, before encoder_hid_proj
            emb = emb + self.add_embedding(encoder_hidden_states)

        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)

        if self.encoder_hid_proj is not None:
            encoder_hidden_states = self.encoder_hid_proj(encoder_hidden_states)
        return emb, encoder_hidden_states

    def _needs_upsample_sizes(self, height: int, width: int) -> bool:
        """Whether the upsamplers must be told their output size (H or W not a multiple of 2^upsamplers)."""
        factor = 2**self.num_upsamplers
        if height % factor == 0 and width % factor == 0:
            return False
        if not all(block.can_force_upsample_size for block in self.up_blocks):
            raise ValueError(
                f"Height and width must be multiples of {factor} for this UNet (got {height}x{width}): "
                "its ResNet upsamplers always double the size."
            )
        return True

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | float | int | None = None,
        timestep_cond: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> UNet3DConditionOutput | tuple[torch.Tensor]:
        r"""Predict from a noisy video.

        Args:
            sample: `(batch, in_channels, frames, height, width)`.
            timestep: a number, a 0-d tensor or a `(batch,)` tensor.
            encoder_hidden_states: `(batch, tokens, encoder_hid_dim)` text states (T5 for the pixel models).
            class_labels: the noise level of the conditioning video, for `class_embed_type: "timestep"`.
            timestep_cond: extra timestep conditioning for `time_cond_proj_dim` (unused by Show-1).
            cross_attention_kwargs: passed to the attention processors.
            return_dict: return a `UNet3DConditionOutput` rather than a 1-tuple.
        """
        batch_size, _, num_frames, height, width = sample.shape
        forward_upsample_size = self._needs_upsample_sizes(height, width)

        if self.config.center_input_sample:
            sample = 2 * sample - 1.0

        emb, encoder_hidden_states = self._embed(sample, timestep, encoder_hidden_states, class_labels, timestep_cond)
        # Once per video -> once per frame, frames of a video contiguous.
        emb = emb.repeat_interleave(num_frames, dim=0)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)

        # (B, C, F, H, W) -> (B*F, C, H, W)
        sample = sample.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, -1, height, width)
        sample = self.conv_in(sample)
        if self.transformer_in is not None:
            sample = self.transformer_in(sample, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]

        block_kwargs = dict(
            encoder_hidden_states=encoder_hidden_states,
            num_frames=num_frames,
            cross_attention_kwargs=cross_attention_kwargs,
        )
        skips = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = down_block(sample, emb, **block_kwargs)
            skips += block_skips

        if self.mid_block is not None:
            sample = self.mid_block(sample, emb, **block_kwargs)

        for up_block in self.up_blocks:
            block_skips, skips = skips[-len(up_block.resnets) :], skips[: -len(up_block.resnets)]
            upsample_size = skips[-1].shape[2:] if forward_upsample_size and skips else None
            sample = up_block(sample, block_skips, emb, upsample_size=upsample_size, **block_kwargs)

        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))

        # (B*F, C, H, W) -> (B, C, F, H, W)
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:]).permute(0, 2, 1, 3, 4)
        if not return_dict:
            return (sample,)
        return UNet3DConditionOutput(sample=sample)


# ------------------------------------------------------------------------------------- trainable sets


_SELECTORS = {
    # the query/key/value projections of the temporal attentions (motion customization, VMC)
    "qkv": re.compile(r"(^|\.)temp_attentions\.\d+\..*\bto_[qkv]\.(weight|bias)$"),
    # everything in the temporal attentions
    "attention": re.compile(r"(^|\.)temp_attentions\."),
    # every temporal layer: temporal attentions, temporal convs and the input temporal transformer
    "temporal": re.compile(r"(^|\.)(temp_attentions|temp_convs)\.|^transformer_in\."),
}


def temporal_attention_parameters(unet: nn.Module, which: str = "qkv") -> dict[str, nn.Parameter]:
    """The parameters of one temporal set (see `TRAINABLE_SETS`), by name."""
    if which not in _SELECTORS:
        raise ValueError(f"Unknown parameter set {which!r}; expected one of {TRAINABLE_SETS}.")
    pattern = _SELECTORS[which]
    return {name: param for name, param in unet.named_parameters() if pattern.search(name)}
