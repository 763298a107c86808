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

The temporal conv is diffusers' `TemporalConvLayer` whose GroupNorm always has 32 groups (its frame
convolutions run as `FramewiseConv3d`), and the temporal attention diffusers' `TransformerTemporalModel`
(two self-attentions over frames). Parameter names are
those of the checkpoints: `resnets.i`, `temp_convs.i`, `attentions.i`, `temp_attentions.i`,
`downsamplers.0`, `upsamplers.0`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
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


class FramewiseConv3d(nn.Conv3d):
    """A convolution over frames only (kernel `(k, 1, 1)`), computed as a Conv2d over `(frames, height * width)`.

    Same parameters, same result as `nn.Conv3d`, but PyTorch's CPU Conv3d takes a slow generic kernel for this
    shape: a training step of the micro keyframe UNet is 1.15x faster this way, a sampling call 1.05x
    (one CPU thread, `benchmarks/results/temporal_conv.json`).
    """

    @classmethod
    def taking_over(cls, conv: nn.Conv3d) -> FramewiseConv3d:
        """One that holds `conv`'s own parameter tensors (no copy; works on the meta device too)."""
        if conv.kernel_size[1:] != (1, 1) or conv.stride != (1, 1, 1) or conv.dilation != (1, 1, 1) or conv.groups != 1:
            raise ValueError(f"not a frames-only convolution: {conv}")
        framewise = cls(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=conv.bias is not None,
                        device="meta")
        framewise.weight, framewise.bias = conv.weight, conv.bias
        return framewise

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = hidden_states.shape
        folded = hidden_states.reshape(batch, channels, frames, height * width)
        out = F.conv2d(folded, self.weight.squeeze(-1), self.bias, padding=(self.padding[0], 0))
        return out.reshape(batch, self.out_channels, out.shape[2], height, width)


def _temporal_conv(channels: int) -> TemporalConvLayer:
    layer = TemporalConvLayer(channels, channels, dropout=TEMPORAL_CONV_DROPOUT, norm_num_groups=TEMPORAL_CONV_NORM_GROUPS)
    for block in (layer.conv1, layer.conv2, layer.conv3, layer.conv4):
        block[-1] = FramewiseConv3d.taking_over(block[-1])
    return layer


def _temporal_attention(channels: int, *, heads: int, head_dim: int, groups: int) -> TransformerTemporalModel:
    return TransformerTemporalModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=channels,
        num_layers=1,
        norm_num_groups=groups,
    )


class _Block3D(nn.Module):
    """Shared machinery: the layer sequence, and gradient checkpointing one layer at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()
        self.temp_convs = nn.ModuleList()
        self.attentions: nn.ModuleList | None = None
        self.temp_attentions: nn.ModuleList | None = None
        # Switched by `ModelMixin.enable_gradient_checkpointing`, which also sets `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False

    def _add_resnets(self, channels: list[tuple[int, int]], resnet: ResnetSettings) -> None:
        """A resnet and its temporal conv per `(in, out)` channel pair."""
        for in_channels, out_channels in channels:
            self.resnets.append(resnet.build(in_channels, out_channels))
            self.temp_convs.append(_temporal_conv(out_channels))

    def _add_attentions(self, channels: list[int], attention: AttentionSettings, norm_groups: int) -> None:
        """A spatial attention and its temporal attention per entry of `channels`."""
        self.attentions = nn.ModuleList(attention.build_spatial(c, norm_groups) for c in channels)
        self.temp_attentions = nn.ModuleList(attention.build_temporal(c, norm_groups) for c in channels)

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
        run = functools.partial(self._run_layer, index, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs)
        return self._checkpointed(run, hidden_states, temb, encoder_hidden_states)

    def _run_layer(self, index, hidden_states, temb, encoder_hidden_states, *, num_frames, cross_attention_kwargs):
        hidden_states = self.resnets[index](hidden_states, temb)
        hidden_states = self.temp_convs[index](hidden_states, num_frames=num_frames)
        if self.attentions is not None:
            hidden_states = _spatial_attention(self.attentions[index], hidden_states, encoder_hidden_states, cross_attention_kwargs)
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


# Block styles: IF blocks resample with ResNets (which take the time embedding) and use the IF-only ResNet
# settings (`resnet_out_scale_factor`, `resnet_skip_time_act`); ModelScope blocks use plain ResNets and
# strided-conv / nearest+conv resamplers.
IF_STYLE = "if"
MODELSCOPE_STYLE = "modelscope"


class _DownBlock3D(_Block3D):
    """Layers `(in -> out), (out -> out), ...`, then a downsampler unless the block is the last."""

    style: str
    attention_settings: type | None = None  # the settings type of the block's attention, if it has one

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetSettings,
        attention: AttentionSettings | None = None,
        add_downsample: bool = True,
        downsample_padding: int = 1,
    ):
        super().__init__()
        _check_attention(self, attention)
        self._add_resnets([(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)], resnet)
        if attention is not None:
            self._add_attentions([out_channels] * num_layers, attention, resnet.groups)

        if not add_downsample:
            self.downsamplers = None
        elif self.style == IF_STYLE:
            self.downsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, down=True)])
        else:
            self.downsamplers = nn.ModuleList(
                [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op")]
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        num_frames: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Returns the block output and the skip connections (one per layer, plus the downsampled one)."""
        output_states = ()
        for index in range(len(self.resnets)):
            hidden_states = self._layer(index, hidden_states, temb, encoder_hidden_states, num_frames, cross_attention_kwargs)
            output_states += (hidden_states,)

        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = _resample(downsampler, hidden_states, temb)
            output_states += (hidden_states,)
        return hidden_states, output_states


class ResnetDownsampleBlock3D(_DownBlock3D):
    """IF style: ResNet layers, ResNet downsampler."""

    style = IF_STYLE


class SimpleCrossAttnDownBlock3D(_DownBlock3D):
    """IF style: ResNet + added-KV attention layers, ResNet downsampler."""

    style = IF_STYLE
    attention_settings = SimpleAttentionSettings


class CrossAttnDownBlock3D(_DownBlock3D):
    """ModelScope style: ResNet + Transformer2D layers, strided-conv downsampler."""

    style = MODELSCOPE_STYLE
    attention_settings = TransformerAttentionSettings


class DownBlock3D(_DownBlock3D):
    """ModelScope style: ResNet layers, strided-conv downsampler."""

    style = MODELSCOPE_STYLE


# ------------------------------------------------------------------------------------------------- up


class _UpBlock3D(_Block3D):
    """Layers on `[hidden, skip]` concatenations, then an upsampler unless the block is the last."""

    style: str
    attention_settings: type | None = None

    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetSettings,
        attention: AttentionSettings | None = None,
        add_upsample: bool = True,
    ):
        super().__init__()
        _check_attention(self, attention)
        # Layer i takes [hidden (block input or previous layer), skip]; the last skip comes from the level above.
        channels = []
        for i in range(num_layers):
            hidden_channels = prev_output_channel if i == 0 else out_channels
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            channels.append((hidden_channels + skip_channels, out_channels))
        self._add_resnets(channels, resnet)
        if attention is not None:
            self._add_attentions([out_channels] * num_layers, attention, resnet.groups)

        if not add_upsample:
            self.upsamplers = None
        elif self.style == IF_STYLE:
            self.upsamplers = nn.ModuleList([resnet.build(out_channels, out_channels, up=True)])
        else:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])

    @property
    def can_force_upsample_size(self) -> bool:
        """IF-style ResNet upsamplers always double; only the nearest+conv one takes an output size."""
        return self.upsamplers is None or self.style != IF_STYLE

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
        """Consumes one skip connection per layer, last first."""
        for index in range(len(self.resnets)):
            skip = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = torch.cat([hidden_states, skip], dim=1)
            hidden_states = self._layer(index, hidden_states, temb, encoder_hidden_states, num_frames, cross_attention_kwargs)

        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = _resample(upsampler, hidden_states, temb, upsample_size)
        return hidden_states


class ResnetUpsampleBlock3D(_UpBlock3D):
    """IF style: ResNet layers, ResNet upsampler."""

    style = IF_STYLE


class SimpleCrossAttnUpBlock3D(_UpBlock3D):
    """IF style: ResNet + added-KV attention layers, ResNet upsampler."""

    style = IF_STYLE
    attention_settings = SimpleAttentionSettings


class CrossAttnUpBlock3D(_UpBlock3D):
    """ModelScope style: ResNet + Transformer2D layers, nearest + conv upsampler."""

    style = MODELSCOPE_STYLE
    attention_settings = TransformerAttentionSettings


class UpBlock3D(_UpBlock3D):
    """ModelScope style: ResNet layers, nearest + conv upsampler."""

    style = MODELSCOPE_STYLE


# ------------------------------------------------------------------------------------------------ mid


class _MidBlock3D(_Block3D):
    """resnet, temporal conv, then per attention layer: attention, temporal attention, resnet, temporal conv."""

    style: str
    attention_settings: type

    def __init__(self, in_channels: int, resnet: ResnetSettings, attention: AttentionSettings, num_layers: int = 1):
        super().__init__()
        _check_attention(self, attention)
        self._add_resnets([(in_channels, in_channels)] * (num_layers + 1), resnet)
        self._add_attentions([in_channels] * num_layers, attention, resnet.groups)

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
            run = functools.partial(self._run_mid_layer, index, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs)
            hidden_states = self._checkpointed(run, hidden_states, temb, encoder_hidden_states)
        return hidden_states

    def _run_first_resnet(self, hidden_states, temb, *, num_frames):
        hidden_states = self.resnets[0](hidden_states, temb)
        return self.temp_convs[0](hidden_states, num_frames=num_frames)

    def _run_mid_layer(self, index, hidden_states, temb, encoder_hidden_states, *, num_frames, cross_attention_kwargs):
        hidden_states = _spatial_attention(self.attentions[index], hidden_states, encoder_hidden_states, cross_attention_kwargs)
        hidden_states = self.temp_attentions[index](
            hidden_states, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs, return_dict=False
        )[0]
        hidden_states = self.resnets[index + 1](hidden_states, temb)
        return self.temp_convs[index + 1](hidden_states, num_frames=num_frames)


class UNetMidBlock3DSimpleCrossAttn(_MidBlock3D):
    """IF style mid block (added-KV attention)."""

    style = IF_STYLE
    attention_settings = SimpleAttentionSettings


class UNetMidBlock3DCrossAttn(_MidBlock3D):
    """ModelScope style mid block (Transformer2D attention)."""

    style = MODELSCOPE_STYLE
    attention_settings = TransformerAttentionSettings


def _check_attention(block: _Block3D, attention: AttentionSettings | None) -> None:
    expected = block.attention_settings
    if (attention is None) != (expected is None) or (expected is not None and not isinstance(attention, expected)):
        wanted = expected.__name__ if expected else "no attention settings"
        raise TypeError(f"{type(block).__name__} takes {wanted}, got {type(attention).__name__}")


# -------------------------------------------------------------------------------------------- factory

DOWN_BLOCKS = {cls.__name__: cls for cls in (ResnetDownsampleBlock3D, SimpleCrossAttnDownBlock3D, CrossAttnDownBlock3D, DownBlock3D)}
UP_BLOCKS = {cls.__name__: cls for cls in (ResnetUpsampleBlock3D, SimpleCrossAttnUpBlock3D, CrossAttnUpBlock3D, UpBlock3D)}
MID_BLOCKS = {cls.__name__: cls for cls in (UNetMidBlock3DSimpleCrossAttn, UNetMidBlock3DCrossAttn)}


def _block_class(kind: str, registry: dict[str, type], name: str) -> type:
    if name not in registry:
        raise ValueError(f"Unknown {kind} block type {name!r}; expected one of {sorted(registry)}.")
    return registry[name]


def _routed(block_class: type, resnet: ResnetSettings, attention: dict[type, AttentionSettings]) -> dict:
    """The settings a block type takes (config routing of the original).

    `resnet` carries the IF-only extras, which ModelScope blocks drop (keeping a mid block's scale factor,
    which comes from `mid_block_scale_factor`); each block gets the attention settings of its own kind.
    """
    if block_class.style == MODELSCOPE_STYLE:
        scale = resnet.output_scale_factor if issubclass(block_class, _MidBlock3D) else 1.0
        resnet = replace(resnet, skip_time_act=False, output_scale_factor=scale)
    settings = attention[block_class.attention_settings] if block_class.attention_settings else None
    return dict(resnet=resnet, attention=settings)


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
    """Build a down block by its config name from the settings of both block styles."""
    block_class = _block_class("down", DOWN_BLOCKS, down_block_type)
    attention = {SimpleAttentionSettings: simple_attention, TransformerAttentionSettings: transformer_attention}
    return block_class(
        in_channels,
        out_channels,
        num_layers,
        add_downsample=add_downsample,
        downsample_padding=downsample_padding,
        **_routed(block_class, resnet, attention),
    )


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
    """Build an up block by its config name from the settings of both block styles."""
    block_class = _block_class("up", UP_BLOCKS, up_block_type)
    attention = {SimpleAttentionSettings: simple_attention, TransformerAttentionSettings: transformer_attention}
    return block_class(
        in_channels,
        prev_output_channel,
        out_channels,
        num_layers,
        add_upsample=add_upsample,
        **_routed(block_class, resnet, attention),
    )


def get_mid_block(
    mid_block_type: str | None,
    *,
    in_channels: int,
    resnet: ResnetSettings,
    simple_attention: SimpleAttentionSettings,
    transformer_attention: TransformerAttentionSettings,
) -> _MidBlock3D | None:
    """Build the mid block (None for none); `resnet.output_scale_factor` is `mid_block_scale_factor` here."""
    if mid_block_type is None:
        return None
    block_class = _block_class("mid", MID_BLOCKS, mid_block_type)
    attention = {SimpleAttentionSettings: simple_attention, TransformerAttentionSettings: transformer_attention}
    return block_class(in_channels, **_routed(block_class, resnet, attention))
