"""Weight-sharing supernet for the vit space (once-for-all style slicing).

The supernet stores the largest member's weights (plus one patch embedding per patch size).
A member runs by slicing every tensor to the member's shapes and calling the static network
with those views (``torch.func.functional_call``), so the supernet's forward and ``extract``
share one slicing rule and agree exactly. Gradients flow into the shared tensors.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call

from nas.arch import ArchConfig, LayerConfig
from search_spaces.layers import VisionTransformer, init_weights
from search_spaces.sparse import sparsify_mlp, to_semi_structured


class VitSupernet(nn.Module):
    def __init__(
        self, largest: ArchConfig, patch_sizes: list[int], attentions: tuple[str, ...] = ("softmax",)
    ) -> None:
        super().__init__()
        self.largest = largest
        self.patch_sizes = sorted(patch_sizes)
        self.max_heads = max(layer.num_heads for layer in largest.layers)
        self.max_hidden = max(largest.mlp_hidden(layer) for layer in largest.layers)
        # One uniform max-size block per layer so every member's layer i fits. Every attention
        # kind's weights are a slice of softmax's (qkv, proj), except slab's extra depthwise conv.
        kind = "slab" if "slab" in attentions else "softmax"
        uniform = LayerConfig(self.max_heads, self.max_hidden / largest.embed_dim, kind)
        self.max_arch = dataclasses.replace(
            largest, layers=(uniform,) * largest.depth, patch_size=self.patch_sizes[0]
        )
        self.body = VisionTransformer(self.max_arch)
        init_weights(self.body)
        # Patch embedding and positions depend on the patch size: one set each.
        self.patch_embeds = nn.ModuleDict()
        self.pos_embeds = nn.ParameterDict()
        for p in self.patch_sizes:
            arch_p = dataclasses.replace(self.max_arch, patch_size=p)
            self.patch_embeds[str(p)] = nn.Conv2d(largest.in_channels, largest.embed_dim, p, p)
            self.pos_embeds[str(p)] = nn.Parameter(torch.zeros(1, arch_p.num_tokens, largest.embed_dim))
            nn.init.trunc_normal_(self.patch_embeds[str(p)].weight, std=0.02)
            nn.init.zeros_(self.patch_embeds[str(p)].bias)
            nn.init.trunc_normal_(self.pos_embeds[str(p)], std=0.02)
        del self.body.patch_embed, self.body.pos_embed  # replaced by the per-patch-size sets
        self._skeletons: OrderedDict[str, VisionTransformer] = OrderedDict()

    @classmethod
    def from_space(cls, space) -> VitSupernet:
        return cls(space.largest(), list(space.patch_size), tuple(space.attention))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.body.mean.copy_(mean.view(-1, 1, 1))
        self.body.std.copy_(std.view(-1, 1, 1))

    def check(self, arch: ArchConfig) -> None:
        """Raise ValueError if ``arch`` is not a member this supernet can run."""
        big = self.max_arch
        problems = []
        if (arch.image_size, arch.in_channels, arch.num_classes) != (
            big.image_size,
            big.in_channels,
            big.num_classes,
        ):
            problems.append("input/classes differ")
        if arch.patch_size not in self.patch_sizes:
            problems.append(f"patch_size {arch.patch_size} not in {self.patch_sizes}")
        if arch.embed_dim > big.embed_dim or arch.head_dim != big.head_dim:
            problems.append("embed_dim/head_dim too large")
        if arch.depth > big.depth:
            problems.append(f"depth {arch.depth} > {big.depth}")
        for layer in arch.layers:
            if layer.num_heads > self.max_heads or arch.mlp_hidden(layer) > self.max_hidden:
                problems.append("layer wider than the supernet")
        if problems:
            raise ValueError(f"{arch.summary()} is not a member of this supernet: {problems}")

    def _skeleton(self, arch: ArchConfig) -> VisionTransformer:
        """Parameter-free (meta device) module with the member's structure, LRU-cached."""
        key = arch.key()
        if key not in self._skeletons:
            with torch.device("meta"):
                self._skeletons[key] = VisionTransformer(arch)
            if len(self._skeletons) > 256:
                self._skeletons.popitem(last=False)
        self._skeletons.move_to_end(key)
        return self._skeletons[key]

    def sliced_state(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """The member's state dict as views of the shared tensors."""
        self.check(arch)
        skeleton = self._skeleton(arch)
        shared = dict(self.body.named_parameters()) | dict(self.body.named_buffers())
        p = str(arch.patch_size)
        shared["patch_embed.weight"] = self.patch_embeds[p].weight
        shared["patch_embed.bias"] = self.patch_embeds[p].bias
        shared["pos_embed"] = self.pos_embeds[p]
        state = {}
        for name, target in list(skeleton.named_parameters()) + list(skeleton.named_buffers()):
            if ".mlp.fc" not in name:
                state[name] = _slice(skeleton, name, shared[name], target.shape)
        dim = arch.embed_dim
        for i, layer in enumerate(arch.layers):  # SparseLinear MLPs: slice, then apply the pattern
            p, hidden = f"blocks.{i}.mlp.", arch.mlp_hidden(layer)
            fc1_w, fc1_b, fc2_w = sparsify_mlp(
                shared[p + "fc1.weight"][:hidden, :dim],
                shared[p + "fc1.bias"][:hidden],
                shared[p + "fc2.weight"][:dim, :hidden],
                layer.mlp_pattern,
                layer.mlp_sparsity,
            )
            state |= {
                p + "fc1.weight": fc1_w,
                p + "fc1.bias": fc1_b,
                p + "fc2.weight": fc2_w,
                p + "fc2.bias": shared[p + "fc2.bias"][:dim],
            }
        return state

    def forward(self, images: torch.Tensor, arch: ArchConfig) -> torch.Tensor:
        return functional_call(self._skeleton(arch), self.sliced_state(arch), (images,))

    @torch.no_grad()
    def extract(self, arch: ArchConfig, semi_structured: bool = False) -> VisionTransformer:
        """A standalone static network with the member's weights copied out.

        N:M and unstructured layers keep dense weights with zeros; structured ones are smaller.
        ``semi_structured=True`` (CUDA only) gives 2:4 layers torch's semi-structured kernels.
        """
        state = {name: t.detach().clone() for name, t in self.sliced_state(arch).items()}
        model = VisionTransformer(arch).to(next(self.parameters()).device)
        model.load_state_dict(state, strict=True)
        return to_semi_structured(model.eval(), arch) if semi_structured else model.eval()


def _slice(skeleton: nn.Module, name: str, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if ".attn.qkv." in name:  # rows (q, k, v) x max heads: keep each part's first heads
        attn = skeleton.get_submodule(name.rsplit(".", 2)[0])
        widths = [attn.num_heads * attn.head_dim] + [attn.num_kv_heads * attn.head_dim] * 2
        parts = tensor.view(3, -1, *tensor.shape[1:])
        cols = (slice(0, shape[1]),) if len(shape) == 2 else ()
        return torch.cat([parts[i][(slice(0, w), *cols)] for i, w in enumerate(widths)])
    return tensor[tuple(slice(0, n) for n in shape)]
