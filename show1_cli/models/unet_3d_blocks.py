"""The 3D blocks of the Show-1 UNet: diffusers' 2D blocks with temporal layers.

Every block works on frames folded into the batch, `(batch * frames, channels, height, width)`, with the
frames of one video contiguous. Each layer of a block runs

    resnet -> temporal conv -> [spatial attention -> temporal attention]

and a block ends, except at the bottom of the UNet, with a down- or upsampler that has no temporal layer
after it. Two families exist, named as in the showlab checkpoints:

* IF style (`ResnetDownsampleBlock3D`, `SimpleCrossAttn*`, `ResnetUpsampleBlock3D`): down/upsampling is a
  ResNet with `down`/`up` set that takes the time embedding, and the spatial attention is diffusers'
  `Attention` with added key/value projections for the text (text and image tokens attended together).
* ModelScope style (`DownBlock3D`, `CrossAttn*`, `UpBlock3D`): strided-conv / nearest+conv samplers and a
  `Transformer2DModel` (self-attention, cross-attention, feed-forward) as spatial attention.

The temporal conv is diffusers' `TemporalConvLayer` whose GroupNorm always has 32 groups, and the temporal
attention diffusers' `TransformerTemporalModel` (two self-attentions over frames). Parameter names are
those of the checkpoints: `resnets.i`, `temp_convs.i`, `attentions.i`, `temp_attentions.i`,
`downsamplers.0`, `upsamplers.0`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import torch
from diffusers.models.attention_processor import Attention, AttnAddedKVProcessor2_0
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, TemporalConvLayer, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from torch import nn

# The original builds its temporal convolutions with a fixed group count, whatever `norm_num_groups` says.
TEMPORAL_CONV_NORM_GROUPS = 32
TEMPORAL_CONV_DROPOUT = 0.1


@dataclass(frozen=True)
class ResnetSettings:
    """How every ResNet of a block is built (the per-block share of the UNet config)."""

    temb_channels: int
    eps: float = 1e-5
    groups: int = 32
    act_fn: str = "silu"
    time_scale_shift: str = "default"
    output_scale_factor: float = 1.0
    skip_time_act: bool = False
    dropout: float = 0.0

    def build(self, in_channels: int, out_channels: int, *, down: bool = False, up: bool = False) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=in_channels,
            out_channels=out_channels,
            temb_channels=self.temb_channels,
            eps=self.eps,
            groups=self.groups,
            dropout=self.dropout,
            time_embedding_norm=self.time_scale_shift,
            non_linearity=self.act_fn,
            output_scale_factor=self.output_scale_factor,
            skip_time_act=self.skip_time_act,
            down=down,
            up=up,
        )


@dataclass(frozen=True)
class SimpleAttentionSettings:
    """IF-style attention: `head_dim` channels per head, text through added key/value projections."""

    head_dim: int
    cross_attention_dim: int
    only_cross_attention: bool = False
    cross_attention_norm: str | None = None

    def build_spatial(self, channels: int, norm_groups: int) -> Attention:
        return Attention(
            query_dim=channels,
            cross_attention_dim=channels,
            heads=channels // self.head_dim,
            dim_head=self.head_dim,
            added_kv_proj_dim=self.cross_attention_dim,
            norm_num_groups=norm_groups,
            bias=True,
            upcast_softmax=True,
            only_cross_attention=self.only_cross_attention,
            cross_attention_norm=self.cross_attention_norm,
            processor=AttnAddedKVProcessor2_0(),
        )

    def build_temporal(self, channels: int, norm_groups: int) -> TransformerTemporalModel:
        # Quirk of the original: the temporal attention takes `head_dim` as its number of heads
        # (heads and head size swapped relative to the spatial attention).
        return _temporal_attention(channels, heads=self.head_dim, head_dim=channels // self.head_dim, groups=norm_groups)


@dataclass(frozen=True)
class TransformerAttentionSettings:
    """ModelScope-style attention: a `Transformer2DModel` with `num_heads` heads."""

    num_heads: int
    cross_attention_dim: int
    transformer_layers: int = 1
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False

    def build_spatial(self, channels: int, norm_groups: int) -> Transformer2DModel:
        return Transformer2DModel(
            num_attention_heads=self.num_heads,
            attention_head_dim=channels // self.num_heads,
            in_channels=channels,
            num_layers=self.transformer_layers,
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=norm_groups,
            use_linear_projection=self.use_linear_projection,
            only_cross_attention=self.only_cross_attention,
            upcast_attention=self.upcast_attention,
        )

    def build_temporal(self, channels: int, norm_groups: int) -> TransformerTemporalModel:
        return _temporal_attention(channels, heads=self.num_heads, head_dim=channels // self.num_heads, groups=norm_groups)


AttentionSettings = SimpleAttentionSettings | TransformerAttentionSettings


def _temporal_conv(channels: int) -> TemporalConvLayer:
    return TemporalConvLayer(
        channels, channels, dropout=TEMPORAL_CONV_DROPOUT, norm_num_groups=TEMPORAL_CONV_NORM_GROUPS
    )


def _temporal_attention(channels: int, *, heads: int, head_dim: int, groups: int) -> TransformerTemporalModel:
    return TransformerTemporalModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=channels,
        num_layers=1,
        norm_num_groups=groups,
    )


class _Block3D(nn.Module):
    """Shared machinery: the per-layer sequence and gradient checkpointing of one layer at a time."""

    has_cross_attention = False

    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()
        self.temp_convs = nn.ModuleList()
        self.attentions: nn.ModuleList | None = None
        self.temp_attentions: nn.ModuleList | None = None
        # Set by `ModelMixin.enable_gradient_checkpointing`, together with `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False

    def _init_layers(self, channels: list[tuple[int, int]], resnet: ResnetSettings, attention: AttentionSettings | None):
        """One resnet + temporal conv (+ spatial and temporal attention) per `(in, out)` channel pair."""
        for in_channels, out_channels in channels:
            self.resnets.append(resnet.build(in_channels, out_channels))
            self.temp_convs.append(_temporal_conv(out_channels))
        if attention is not None:
            self.has_cross_attention = True
            self.attentions = nn.ModuleList(attention.build_spatial(out, resnet.groups) for _, out in channels)
            self.temp_attentions = nn.ModuleList(attention.build_temporal(out, resnet.groups) for _, out in channels)

    def _checkpointed(self, function, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(function, *args)
        return function(*args)

    def _layer(
        self,
        index: int,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None,
        num_frames: int,
        cross_attention_kwargs: dict[str, Any] | None,
    ) -> torch.Tensor:
        run = functools.partial(
            self._run_layer, index, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs
        )
        return self._checkpointed(run, hidden_states, temb, encoder_hidden_states)

    def _run_layer(self, index, hidden_states, temb, encoder_hidden_states, *, num_frames, cross_attention_kwargs):
        hidden_states = self.resnets[index](hidden_states, temb)
        hidden_states = self.temp_convs[index](hidden_states, num_frames=num_frames)
        if self.attentions is not None:
            hidden_states = _spatial_attention(
                self.attentions[index], hidden_states, encoder_hidden_states, cross_attention_kwargs
            )
            hidden_states = self.temp_attentions[index](
                hidden_states, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs, return_dict=False
            )[0]
        return hidden_states


def _spatial_attention(attention, hidden_states, encoder_hidden_states, cross_attention_kwargs):
    if isinstance(attention, Transformer2DModel):
        return attention(
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]
    # The added-KV processor adds the residual itself.
    return attention(hidden_states, encoder_hidden_states=encoder_hidden_states, **(cross_attention_kwargs or {}))


def _resample(sampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor | None, size=None) -> torch.Tensor:
    if isinstance(sampler, ResnetBlock2D):  # IF style: a ResNet with down/up set
        return sampler(hidden_states, temb)
    if isinstance(sampler, Upsample2D):
        return sampler(hidden_states, size)
    return sampler(hidden_states)


# ----------------------------------------------------------------------------------------------- down


class _DownBlock3D(_Block3D):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetSettings,
        attention: AttentionSettings | None,
        downsampler: str | None,
        downsample_padding: int = 1,
    ):
        super().__init__()
        self._init_layers([(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)],
                          resnet, attention)
        if downsampler == "resnet":
            self.downsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, down=True)])
        elif downsampler == "conv":
            self.downsamplers = nn.ModuleList(
                [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding,
                              name="op")]
            )
        else:
            self.downsamplers = None

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        num_frames: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output_states = ()
        for index in range(len(self.resnets)):
            hidden_states = self._layer(
                index, hidden_states, temb, encoder_hidden_states, num_frames, cross_attention_kwargs
            )
            output_states += (hidden_states,)

        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = _resample(downsampler, hidden_states, temb)
            output_states += (hidden_states,)
        return hidden_states, output_states


class ResnetDownsampleBlock3D(_DownBlock3D):
    """IF-style ResNet block whose downsampler is a ResNet (`down=True`)."""

    def __init__(self, in_channels, out_channels, num_layers, resnet: ResnetSettings, add_downsample=True):
        super().__init__(in_channels, out_channels, num_layers, resnet, None, "resnet" if add_downsample else None)


class SimpleCrossAttnDownBlock3D(_DownBlock3D):
    """IF-style ResNet + added-KV attention block, ResNet downsampler."""

    def __init__(self, in_channels, out_channels, num_layers, resnet: ResnetSettings,
                 attention: SimpleAttentionSettings, add_downsample=True):
        super().__init__(in_channels, out_channels, num_layers, resnet, attention,
                         "resnet" if add_downsample else None)


class CrossAttnDownBlock3D(_DownBlock3D):
    """ModelScope-style ResNet + Transformer2D block, strided-conv downsampler."""

    def __init__(self, in_channels, out_channels, num_layers, resnet: ResnetSettings,
                 attention: TransformerAttentionSettings, add_downsample=True, downsample_padding=1):
        super().__init__(in_channels, out_channels, num_layers, resnet, attention,
                         "conv" if add_downsample else None, downsample_padding)


class DownBlock3D(_DownBlock3D):
    """ModelScope-style ResNet block, strided-conv downsampler."""

    def __init__(self, in_channels, out_channels, num_layers, resnet: ResnetSettings, add_downsample=True,
                 downsample_padding=1):
        super().__init__(in_channels, out_channels, num_layers, resnet, None, "conv" if add_downsample else None,
                         downsample_padding)


# ------------------------------------------------------------------------------------------------- up


class _UpBlock3D(_Block3D):
    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetSettings,
        attention: AttentionSettings | None,
        upsampler: str | None,
    ):
        super().__init__()
        # Layer i takes [hidden (previous layer or block), skip]; the last skip comes from the level below.
        channels = []
        for i in range(num_layers):
            hidden_channels = prev_output_channel if i == 0 else out_channels
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            channels.append((hidden_channels + skip_channels, out_channels))
        self._init_layers(channels, resnet, attention)
        if upsampler == "resnet":
            self.upsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, up=True)])
        elif upsampler == "conv":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        else:
            self.upsamplers = None

    @property
    def can_force_upsample_size(self) -> bool:
        """IF-style ResNet upsamplers always double; only the nearest+conv one takes an output size."""
        return self.upsamplers is None or not isinstance(self.upsamplers[0], ResnetBlock2D)

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        num_frames: int = 1,
        upsample_size: tuple[int, int] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        for index in range(len(self.resnets)):
            skip = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = torch.cat([hidden_states, skip], dim=1)
            hidden_states = self._layer(
                index, hidden_states, temb, encoder_hidden_states, num_frames, cross_attention_kwargs
            )

        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = _resample(upsampler, hidden_states, temb, upsample_size)
        return hidden_states


class ResnetUpsampleBlock3D(_UpBlock3D):
    """IF-style ResNet block whose upsampler is a ResNet (`up=True`)."""

    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, resnet: ResnetSettings,
                 add_upsample=True):
        super().__init__(in_channels, prev_output_channel, out_channels, num_layers, resnet, None,
                         "resnet" if add_upsample else None)


class SimpleCrossAttnUpBlock3D(_UpBlock3D):
    """IF-style ResNet + added-KV attention block, ResNet upsampler."""

    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, resnet: ResnetSettings,
                 attention: SimpleAttentionSettings, add_upsample=True):
        super().__init__(in_channels, prev_output_channel, out_channels, num_layers, resnet, attention,
                         "resnet" if add_upsample else None)


class CrossAttnUpBlock3D(_UpBlock3D):
    """ModelScope-style ResNet + Transformer2D block, nearest + conv upsampler."""

    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, resnet: ResnetSettings,
                 attention: TransformerAttentionSettings, add_upsample=True):
        super().__init__(in_channels, prev_output_channel, out_channels, num_layers, resnet, attention,
                         "conv" if add_upsample else None)


class UpBlock3D(_UpBlock3D):
    """ModelScope-style ResNet block, nearest + conv upsampler."""

    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, resnet: ResnetSettings,
                 add_upsample=True):
        super().__init__(in_channels, prev_output_channel, out_channels, num_layers, resnet, None,
                         "conv" if add_upsample else None)


# ------------------------------------------------------------------------------------------------ mid


class _MidBlock3D(_Block3D):
    """resnet, temporal conv, then per attention layer: attention, temporal attention, resnet, temporal conv."""

    def __init__(self, channels: int, resnet: ResnetSettings, attention: AttentionSettings, num_layers: int = 1):
        super().__init__()
        self._init_layers([(channels, channels)] * num_layers, resnet, attention)
        self.resnets.insert(0, resnet.build(channels, channels))
        self.temp_convs.insert(0, _temporal_conv(channels))

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        num_frames: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        run = functools.partial(self._run_first_resnet, num_frames=num_frames)
        hidden_states = self._checkpointed(run, hidden_states, temb)
        for index in range(len(self.attentions)):
            run = functools.partial(self._run_mid_layer, index, num_frames=num_frames,
                                    cross_attention_kwargs=cross_attention_kwargs)
            hidden_states = self._checkpointed(run, hidden_states, temb, encoder_hidden_states)
        return hidden_states

    def _run_first_resnet(self, hidden_states, temb, *, num_frames):
        hidden_states = self.resnets[0](hidden_states, temb)
        return self.temp_convs[0](hidden_states, num_frames=num_frames)

    def _run_mid_layer(self, index, hidden_states, temb, encoder_hidden_states, *, num_frames, cross_attention_kwargs):
        hidden_states = _spatial_attention(
            self.attentions[index], hidden_states, encoder_hidden_states, cross_attention_kwargs
        )
        hidden_states = self.temp_attentions[index](
            hidden_states, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs, return_dict=False
        )[0]
        hidden_states = self.resnets[index + 1](hidden_states, temb)
        return self.temp_convs[index + 1](hidden_states, num_frames=num_frames)


class UNetMidBlock3DSimpleCrossAttn(_MidBlock3D):
    """IF-style mid block (added-KV attention)."""

    def __init__(self, in_channels, resnet: ResnetSettings, attention: SimpleAttentionSettings, num_layers=1):
        super().__init__(in_channels, resnet, attention, num_layers)


class UNetMidBlock3DCrossAttn(_MidBlock3D):
    """ModelScope-style mid block (Transformer2D attention)."""

    def __init__(self, in_channels, resnet: ResnetSettings, attention: TransformerAttentionSettings, num_layers=1):
        super().__init__(in_channels, resnet, attention, num_layers)


# -------------------------------------------------------------------------------------------- factory


def _modelscope_resnet(resnet: ResnetSettings, *, keep_scale: bool = False) -> ResnetSettings:
    """ModelScope-style blocks ignore `resnet_skip_time_act` and `resnet_out_scale_factor` (config routing)."""
    return replace(resnet, skip_time_act=False, output_scale_factor=resnet.output_scale_factor if keep_scale else 1.0)


def get_down_block(
    down_block_type: str,
    *,
    in_channels: int,
    out_channels: int,
    num_layers: int,
    add_downsample: bool,
    resnet: ResnetSettings,
    simple_attention: SimpleAttentionSettings,
    transformer_attention: TransformerAttentionSettings,
    downsample_padding: int = 1,
) -> _DownBlock3D:
    """Build a down block by its config name; each type takes only the settings it uses.

    `resnet` carries the IF-style extras (`resnet_out_scale_factor`, `resnet_skip_time_act`), which only
    the IF-style blocks use; `downsample_padding` only matters to the strided-conv downsamplers.
    """
    common = dict(in_channels=in_channels, out_channels=out_channels, num_layers=num_layers,
                  add_downsample=add_downsample)
    if down_block_type == "ResnetDownsampleBlock3D":
        return ResnetDownsampleBlock3D(**common, resnet=resnet)
    if down_block_type == "SimpleCrossAttnDownBlock3D":
        return SimpleCrossAttnDownBlock3D(**common, resnet=resnet, attention=simple_attention)
    if down_block_type == "CrossAttnDownBlock3D":
        return CrossAttnDownBlock3D(**common, resnet=_modelscope_resnet(resnet), attention=transformer_attention,
                                    downsample_padding=downsample_padding)
    if down_block_type == "DownBlock3D":
        return DownBlock3D(**common, resnet=_modelscope_resnet(resnet), downsample_padding=downsample_padding)
    raise ValueError(f"Unknown down block type {down_block_type!r}; expected one of {DOWN_BLOCK_TYPES}.")


def get_up_block(
    up_block_type: str,
    *,
    in_channels: int,
    prev_output_channel: int,
    out_channels: int,
    num_layers: int,
    add_upsample: bool,
    resnet: ResnetSettings,
    simple_attention: SimpleAttentionSettings,
    transformer_attention: TransformerAttentionSettings,
) -> _UpBlock3D:
    """Build an up block by its config name (see `get_down_block` for the routing of `resnet`)."""
    common = dict(in_channels=in_channels, prev_output_channel=prev_output_channel, out_channels=out_channels,
                  num_layers=num_layers, add_upsample=add_upsample)
    if up_block_type == "ResnetUpsampleBlock3D":
        return ResnetUpsampleBlock3D(**common, resnet=resnet)
    if up_block_type == "SimpleCrossAttnUpBlock3D":
        return SimpleCrossAttnUpBlock3D(**common, resnet=resnet, attention=simple_attention)
    if up_block_type == "CrossAttnUpBlock3D":
        return CrossAttnUpBlock3D(**common, resnet=_modelscope_resnet(resnet), attention=transformer_attention)
    if up_block_type == "UpBlock3D":
        return UpBlock3D(**common, resnet=_modelscope_resnet(resnet))
    raise ValueError(f"Unknown up block type {up_block_type!r}; expected one of {UP_BLOCK_TYPES}.")


def get_mid_block(
    mid_block_type: str | None,
    *,
    in_channels: int,
    resnet: ResnetSettings,
    simple_attention: SimpleAttentionSettings,
    transformer_attention: TransformerAttentionSettings,
) -> _MidBlock3D | None:
    """Build the mid block; `resnet.output_scale_factor` is the config's `mid_block_scale_factor` here."""
    if mid_block_type == "UNetMidBlock3DSimpleCrossAttn":
        return UNetMidBlock3DSimpleCrossAttn(in_channels, resnet, simple_attention)
    if mid_block_type == "UNetMidBlock3DCrossAttn":
        return UNetMidBlock3DCrossAttn(in_channels, _modelscope_resnet(resnet, keep_scale=True), transformer_attention)
    if mid_block_type is None:
        return None
    raise ValueError(f"Unknown mid block type {mid_block_type!r}; expected one of {MID_BLOCK_TYPES}.")


DOWN_BLOCK_TYPES = ("ResnetDownsampleBlock3D", "SimpleCrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D")
UP_BLOCK_TYPES = ("ResnetUpsampleBlock3D", "SimpleCrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D")
MID_BLOCK_TYPES = ("UNetMidBlock3DSimpleCrossAttn", "UNetMidBlock3DCrossAttn")
