"""Weight-sharing supernets (once-for-all style slicing) for the vit and hybrid spaces.

A supernet stores the weights of one static network as large as every member in every
dimension (``max_arch``), plus the tensors of the alternatives that network lacks (another stem,
another kind of downsampling: ``alternatives``). A member runs by slicing every tensor to the
member's shapes and calling the member's static network with those views
(``torch.func.functional_call``), so the supernet's forward and ``extract`` share one slicing
rule and agree exactly. Gradients flow into the shared tensors. SparsePair layers (SparseLinear /
SparseConv2d) are sliced to their full hidden width and then given their sparsity pattern (masks,
or the important channels).

BatchNorm (residual stages, deep and conv stems): training normalises with each batch's
statistics; a member run in eval mode or extracted gets running statistics of its own,
recomputed on the calibration images the supernet keeps (``set_calibration``; OFA's
``set_running_statistics``), since the shared running averages mix every member's.

Over 400 lines: the slicing rule, the alternatives' tensors and the per-member BatchNorm
recalibration are one contract (forward and ``extract`` must agree exactly), kept in one file.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from search_spaces.arch import CONV_STEM_STRIDE, Arch, ArchConfig, ConvBlockConfig, LayerConfig
from search_spaces.networks import init_weights, static_model
from search_spaces.ops import Attention, SparsePair
from search_spaces.shapes import hidden_width
from search_spaces.sparse import sparsify_pair, to_semi_structured


def _max_layer(largest_hidden: int, dim: int, max_heads: int, attentions: tuple[str, ...]) -> LayerConfig:
    # Every attention kind's weights are a slice of softmax's (qkv, proj), except slab's extra
    # depthwise conv: the uniform max block uses slab where the space has it.
    kind = "slab" if "slab" in attentions else "softmax"
    return LayerConfig(max_heads, largest_hidden / dim, kind)


CALIBRATION_BYTES = 8 * 2**20  # calibration images kept: 512 at 32 px RGB, 64 at 224 px
CALIBRATION_BATCH = 256
_STATS = ("running_mean", "running_var", "num_batches_tracked")


def calibration_size(input_shape: Sequence[int]) -> int:
    """How many uint8 images of ``input_shape`` a supernet keeps to recompute BatchNorm statistics."""
    per_image = max(1, int(torch.Size(input_shape).numel()))
    return max(64, min(512, CALIBRATION_BYTES // per_image))


class Supernet(nn.Module):
    """Shared weights of ``max_arch``'s static network (and of ``alternatives``' tensors that it
    lacks: tensors of the same name must agree in shape); members are slices of them. Tensors
    named in ``own`` (prefixes) a subclass holds itself, per member kind."""

    def __init__(self, max_arch: Arch, alternatives: Sequence[Arch] = (), own: Sequence[str] = ()) -> None:
        super().__init__()
        self.max_arch = max_arch
        self.body = static_model(max_arch)
        init_weights(self.body)
        held = dict(self.body.named_parameters()) | dict(self.body.named_buffers())
        added: dict[str, torch.Tensor] = {}
        for other in alternatives:
            model = static_model(other)
            init_weights(model)
            for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
                if name.startswith(tuple(own)):
                    continue
                known = held.get(name, added.get(name))
                if known is None:
                    added[name] = tensor
                elif known.shape != tensor.shape:
                    raise ValueError(
                        f"{name}: {tuple(tensor.shape)} in {other.summary()}, {tuple(known.shape)} before"
                    )
        if added:  # only then: supernets without alternatives keep their state dict's names
            self.alternatives = nn.Module()
            for name, tensor in added.items():
                if isinstance(tensor, nn.Parameter):
                    self.alternatives.register_parameter(_mangle(name), tensor)
                else:
                    self.alternatives.register_buffer(_mangle(name), tensor.detach().clone())
        self._batchnorm = any(name.endswith(".running_mean") for name in (*held, *added))
        if self._batchnorm:
            count = calibration_size(max_arch.input_shape)
            self.register_buffer("calibration", torch.zeros(count, *max_arch.input_shape, dtype=torch.uint8))
            self.register_buffer("calibration_count", torch.zeros((), dtype=torch.long))
        self._skeletons: OrderedDict[str, nn.Module] = OrderedDict()
        # Per member: its skeleton and how each of its tensors slices a shared one, worked out
        # (and checked) once, so a training step spends its time in kernels, not in Python.
        self._plans: OrderedDict[str, tuple] = OrderedDict()
        self._tensors: dict[str, torch.Tensor] | None = None
        self._stats: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()  # BatchNorm, per member

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.body.mean.copy_(mean.view(-1, 1, 1))
        self.body.std.copy_(std.view(-1, 1, 1))

    @property
    def calibration_size(self) -> int:
        """How many calibration images ``set_calibration`` keeps (0: no member has BatchNorm)."""
        return len(self.calibration) if self._batchnorm else 0

    def set_calibration(self, images: torch.Tensor) -> None:
        """Keep (up to ``calibration_size``) uint8 training images (N, C, H, W): a member run in
        eval mode or extracted recomputes its BatchNorm statistics on them. A no-op for a
        supernet without BatchNorm."""
        if not self._batchnorm:
            return
        count = min(len(images), len(self.calibration))
        self.calibration[:count].copy_(images[:count])
        self.calibration_count.fill_(count)
        self._stats.clear()

    def _shared(self, arch) -> dict[str, torch.Tensor]:
        """Name -> shared full-size tensor, in the member's naming."""
        if self._tensors is None:
            self._tensors = dict(self.body.named_parameters()) | dict(self.body.named_buffers())
            if hasattr(self, "alternatives"):
                tensors = list(self.alternatives.named_parameters()) + list(self.alternatives.named_buffers())
                self._tensors |= {_unmangle(name): tensor for name, tensor in tensors}
        return self._tensors

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half(): tensors may be new ones
        self._tensors = None
        self._stats.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        if mode:  # the weights will change: BatchNorm statistics are recomputed when next needed
            self._stats.clear()
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._stats.clear()
        return super().load_state_dict(*args, **kwargs)

    def _problems(self, arch) -> list[str]:
        """Family-specific reasons ``arch`` is not a member (beyond tensor shapes)."""
        big = self.max_arch
        if type(arch) is not type(big):
            return [f"a {type(arch).__name__}, not a {type(big).__name__}"]
        if (arch.image_size, arch.in_channels, arch.num_classes, arch.head_dim) != (
            big.image_size,
            big.in_channels,
            big.num_classes,
            big.head_dim,
        ):
            return ["input, classes or head_dim differ"]
        return []

    def check(self, arch) -> None:
        """Raise ValueError if ``arch`` is not a member: every tensor must be a slice of a shared one."""
        problems = self._problems(arch)
        if not problems:
            shared, skeleton = self._shared(arch), self._skeleton(arch)
            full = _full_shapes(skeleton)
            for name, shape in full.items():
                if name not in shared:
                    problems.append(f"{name} has no shared weights (too deep)")
                elif len(shape) != shared[name].dim() or any(
                    n > m for n, m in zip(shape, shared[name].shape)
                ):
                    problems.append(f"{name} {tuple(shape)} wider than {tuple(shared[name].shape)}")
                if len(problems) > 3:
                    break
            for name, attn in skeleton.named_modules():  # q/k/v parts must each fit, not just their sum
                if isinstance(attn, Attention) and f"{name}.qkv.weight" in shared:
                    most = self.body.get_submodule(name).num_heads
                    if max(attn.num_heads, attn.num_kv_heads) > most:
                        problems.append(f"{name} has more heads than {most}")
        if problems:
            raise ValueError(f"{arch.summary()} is not a member of this supernet: {problems}")

    def _skeleton(self, arch) -> nn.Module:
        """Parameter-free (meta device) module with the member's structure, LRU-cached."""
        key = arch.key()
        if key not in self._skeletons:
            with torch.device("meta"):
                self._skeletons[key] = static_model(arch)
            if len(self._skeletons) > 256:
                self._skeletons.popitem(last=False)
        self._skeletons.move_to_end(key)
        return self._skeletons[key]

    def _plan(self, arch) -> tuple[nn.Module, list, list]:
        """(skeleton, plain tensors, sparse pairs) of a checked member, LRU-cached: each plain
        tensor as (name, index of the shared tensor, q/k/v widths or None), each pair as (prefix,
        hidden, dim, pattern, level)."""
        key = arch.key()
        if key not in self._plans:
            self.check(arch)
            skeleton = self._skeleton(arch)
            pairs = [(name, m) for name, m in skeleton.named_modules() if isinstance(m, SparsePair)]
            paired = {
                f"{name}.{part}" for name, _ in pairs for part in ("fc1.weight", "fc1.bias", "fc2.weight")
            }
            plain = []
            for name, target in list(skeleton.named_parameters()) + list(skeleton.named_buffers()):
                if name in paired:
                    continue
                index = tuple(slice(0, n) for n in target.shape)
                widths = None
                if ".attn.qkv." in name:  # rows (q, k, v) x max heads: keep each part's first heads
                    attn = skeleton.get_submodule(name.rsplit(".", 2)[0])
                    widths = [attn.num_heads * attn.head_dim] + [attn.num_kv_heads * attn.head_dim] * 2
                plain.append((name, index, widths))
            pair_plan = [
                (f"{name}.", pair.hidden, pair.dim, pair.pattern, pair.level) for name, pair in pairs
            ]
            self._plans[key] = (skeleton, plain, pair_plan)
            if len(self._plans) > 256:
                self._plans.popitem(last=False)
        self._plans.move_to_end(key)
        return self._plans[key]

    def sliced_state(self, arch, calibrated: bool | None = None) -> dict[str, torch.Tensor]:
        """The member's state dict as views of the shared tensors (sparsity patterns applied);
        ``calibrated`` (default: in eval mode) with its own BatchNorm statistics."""
        state = self._sliced_state(arch)
        if (self.training if calibrated is None else not calibrated) or not self._batchnorm:
            return state
        return state | self._batchnorm_stats(arch, state)

    @torch.no_grad()
    def _batchnorm_stats(self, arch, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The member's BatchNorm running statistics over the calibration images (the exact mean
        and variance, averaged over batches), LRU-cached until the weights may change."""
        count = int(self.calibration_count)
        skeleton = self._plan(arch)[0]
        norms = [m for m in skeleton.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not count or not norms:
            return {}
        key = arch.key()
        if key not in self._stats:
            stats = {
                name: torch.zeros_like(t) if not name.endswith("running_var") else torch.ones_like(t)
                for name, t in state.items()
                if name.endswith(_STATS)
            }
            modes = [(m, m.training, m.momentum) for m in norms]
            for m in norms:
                m.train()
                m.momentum = None  # a cumulative average over the calibration batches
            try:
                for start in range(0, count, CALIBRATION_BATCH):
                    images = self.calibration[start : min(count, start + CALIBRATION_BATCH)].float().div(255)
                    functional_call(skeleton, state | stats, (images,))
            finally:
                for m, training, momentum in modes:
                    m.train(training)
                    m.momentum = momentum
            self._stats[key] = stats
            if len(self._stats) > 256:
                self._stats.popitem(last=False)
        self._stats.move_to_end(key)
        return self._stats[key]

    def _sliced_state(self, arch) -> dict[str, torch.Tensor]:
        _, plain, pairs = self._plan(arch)
        shared = self._shared(arch)
        state = {}
        for name, index, widths in plain:
            tensor = shared[name]
            if widths is None:
                state[name] = tensor[index]
            else:
                parts = tensor.view(3, -1, *tensor.shape[1:])
                cols = index[1:2]
                state[name] = torch.cat([parts[i][(slice(0, w), *cols)] for i, w in enumerate(widths)])
        for p, hidden, dim, pattern, level in pairs:  # slice the full hidden width, then apply the pattern
            fc1_w, fc1_b, fc2_w = sparsify_pair(
                shared[p + "fc1.weight"][:hidden, :dim],
                shared[p + "fc1.bias"][:hidden],
                shared[p + "fc2.weight"][:dim, :hidden],
                pattern,
                level,
            )
            state |= {p + "fc1.weight": fc1_w, p + "fc1.bias": fc1_b, p + "fc2.weight": fc2_w}
        return state

    def forward(self, images: torch.Tensor, arch) -> torch.Tensor:
        skeleton = self._plan(arch)[0]
        if skeleton.training != self.training:  # BatchNorm: batch statistics only when training
            skeleton.train(self.training)
        return functional_call(skeleton, self.sliced_state(arch), (images,))

    @torch.no_grad()
    def extract(self, arch, semi_structured: bool = False) -> nn.Module:
        """A standalone static network with the member's weights copied out.

        N:M and unstructured layers keep dense weights with zeros; structured ones are smaller.
        ``semi_structured=True`` (CUDA only) gives 2:4 linear layers torch's semi-structured kernels.
        """
        state = {name: t.detach().clone() for name, t in self.sliced_state(arch, calibrated=True).items()}
        model = static_model(arch).to(next(self.parameters()).device)
        model.load_state_dict(state, strict=True)
        return to_semi_structured(model.eval(), arch) if semi_structured else model.eval()


class VitSupernet(Supernet):
    """The vit space's supernet, plus one patch embedding and position table per patch size (and
    one patch embedding per patch size that follows the conv stem, where the space has it)."""

    def __init__(
        self,
        largest: ArchConfig,
        patch_sizes: list[int],
        attentions: tuple[str, ...] = ("softmax",),
        stems: tuple[str, ...] = ("patch",),
    ) -> None:
        self.patch_sizes = sorted(patch_sizes)
        max_heads = max(layer.num_heads for layer in largest.layers)
        max_hidden = max(largest.mlp_hidden(layer) for layer in largest.layers)
        uniform = _max_layer(max_hidden, largest.embed_dim, max_heads, attentions)
        max_arch = dataclasses.replace(
            largest, layers=(uniform,) * largest.depth, patch_size=self.patch_sizes[0], stem="patch"
        )
        conv_sizes = [p for p in self.patch_sizes if p % CONV_STEM_STRIDE == 0] if "conv" in stems else []
        alternatives = (
            [dataclasses.replace(max_arch, stem="conv", patch_size=conv_sizes[0])] if conv_sizes else []
        )
        super().__init__(max_arch, alternatives, own=("patch_embed.", "pos_embed"))
        self.largest, self.max_heads, self.max_hidden = largest, max_heads, max_hidden
        self.patch_embeds = nn.ModuleDict()
        self.pos_embeds = nn.ParameterDict()
        dim = largest.embed_dim
        for p in self.patch_sizes:  # (this order: the weights of a seed are those of before)
            if "patch" in stems:
                self._add_embed(str(p), largest.in_channels, dim, p)
            arch_p = dataclasses.replace(max_arch, patch_size=p)
            self.pos_embeds[str(p)] = nn.Parameter(torch.zeros(1, arch_p.num_tokens, dim))
            nn.init.trunc_normal_(self.pos_embeds[str(p)], std=0.02)
        for p in conv_sizes:
            self._add_embed(f"conv{p}", dim, dim, p // CONV_STEM_STRIDE)
        del self.body.patch_embed, self.body.pos_embed  # replaced by the per-patch-size sets

    def _add_embed(self, name: str, channels: int, dim: int, kernel: int) -> None:
        self.patch_embeds[name] = nn.Conv2d(channels, dim, kernel, kernel)
        nn.init.trunc_normal_(self.patch_embeds[name].weight, std=0.02)
        nn.init.zeros_(self.patch_embeds[name].bias)

    @classmethod
    def from_space(cls, space) -> VitSupernet:
        return cls(space.largest(), list(space.patch_size), tuple(space.attention), tuple(space.stem))

    @staticmethod
    def _embed(arch) -> str:
        return f"conv{arch.patch_size}" if arch.stem == "conv" else str(arch.patch_size)

    def _problems(self, arch) -> list[str]:
        problems = super()._problems(arch)
        if not problems and arch.patch_size not in self.patch_sizes:
            problems.append(f"patch_size {arch.patch_size} not in {self.patch_sizes}")
        elif not problems and self._embed(arch) not in self.patch_embeds:
            problems.append(f"no {arch.stem} stem for patch_size {arch.patch_size}")
        return problems

    def _shared(self, arch) -> dict[str, torch.Tensor]:
        embed = self.patch_embeds[self._embed(arch)]
        return super()._shared(arch) | {
            "patch_embed.weight": embed.weight,
            "patch_embed.bias": embed.bias,
            "pos_embed": self.pos_embeds[str(arch.patch_size)],
        }


class HybridSupernet(Supernet):
    """The hybrid space's supernet: every stage at its widest, with its most residual, conv and
    attention blocks, each block as wide as any member's; with the tensors of the cheaper stem
    and downsampling kinds too, where the space offers them."""

    @classmethod
    def from_space(cls, space) -> HybridSupernet:
        largest = space.largest()
        stages = []
        for stage in largest.stages:
            max_expansion = max((b.expansion for b in stage.conv_blocks), default=1.0)
            max_heads = max((layer.num_heads for layer in stage.attention_blocks), default=1)
            max_hidden = max(
                (hidden_width(stage.width, layer.mlp_ratio) for layer in stage.attention_blocks), default=1
            )
            uniform = _max_layer(max_hidden, stage.width, max_heads, tuple(space.attention))
            stages.append(
                dataclasses.replace(
                    stage,
                    conv_blocks=(ConvBlockConfig(max_expansion),) * len(stage.conv_blocks),
                    attention_blocks=(uniform,) * len(stage.attention_blocks),
                )
            )
        max_arch = dataclasses.replace(largest, stages=tuple(stages))
        # The cheapest stem and downsampling kinds (the largest member has the dearest): their
        # tensors have names of their own.
        cheapest = dataclasses.replace(
            max_arch,
            stem=space.stem[0],
            stages=tuple(
                dataclasses.replace(st, downsample=choices.downsample[0])
                for st, choices in zip(max_arch.stages, space.stages)
            ),
        )
        return cls(max_arch, [cheapest] if cheapest != max_arch else [])


def _mangle(name: str) -> str:
    return name.replace(".", "__")


def _unmangle(name: str) -> str:
    return name.replace("__", ".")


def _full_shapes(skeleton: nn.Module) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape before sparsity: SparsePair weights at their full hidden width."""
    tensors = list(skeleton.named_parameters()) + list(skeleton.named_buffers())
    shapes = {name: tuple(t.shape) for name, t in tensors}
    for name, pair in skeleton.named_modules():
        if isinstance(pair, SparsePair):
            w1, w2 = shapes[f"{name}.fc1.weight"], shapes[f"{name}.fc2.weight"]
            shapes[f"{name}.fc1.weight"] = (pair.hidden, *w1[1:])
            shapes[f"{name}.fc1.bias"] = (pair.hidden,)
            shapes[f"{name}.fc2.weight"] = (w2[0], pair.hidden, *w2[2:])
    return shapes
