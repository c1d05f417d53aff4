"""Reusable ops of the static networks (like timm/layers): activations, token mixers (attention
variants, pooling), sparse pairs (MLP, conv MLP), the residual blocks built from them, and the
ResNet-style ops (basic blocks, strided downsampling, deep and conv stems)."""

from search_spaces.ops.activation import TopKReLU, make_activation
from search_spaces.ops.attention import (
    TOKEN_MIXERS,
    Attention,
    GroupedQueryAttention,
    LinearAttention,
    LocalAttention,
    MultiQueryAttention,
    Pooling,
    SlabAttention,
    SparseQueryAttention,
    attention_heads,
    local_mask,
    register_mixer,
    relu_linear_attention,
    token_mixer,
)
from search_spaces.ops.blocks import Block, ConvBlock, Downsample
from search_spaces.ops.mlp import ConvMlp, Mlp, SparsePair
from search_spaces.ops.resnet import BasicBlock, ConvStem, DeepStem, ResDownsample, conv_bn

__all__ = [
    "TOKEN_MIXERS",
    "Attention",
    "BasicBlock",
    "Block",
    "ConvBlock",
    "ConvMlp",
    "ConvStem",
    "DeepStem",
    "Downsample",
    "GroupedQueryAttention",
    "LinearAttention",
    "LocalAttention",
    "Mlp",
    "MultiQueryAttention",
    "Pooling",
    "ResDownsample",
    "SlabAttention",
    "SparsePair",
    "SparseQueryAttention",
    "TopKReLU",
    "attention_heads",
    "conv_bn",
    "local_mask",
    "make_activation",
    "register_mixer",
    "relu_linear_attention",
    "token_mixer",
]
