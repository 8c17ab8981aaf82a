"""The ABAW fusion model: per-extractor affine layers, positional encoding, a transformer encoder and
three heads (valence/arousal, expressions, action units).

Self-contained (single-dot imports only) so that ``save_pretrained`` ships working remote code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_abaw_fusion import AbawFusionConfig
from .losses_abaw_fusion import LOSSES
from .tasks_abaw_fusion import ABAW_TASK_NAMES, tasks_of


@dataclass
class AbawFusionOutput(ModelOutput):
    """Output of [`AbawFusionModel`].

    Args:
        loss: total multi-task loss (only when labels are given).
        valence_loss, arousal_loss, expression_loss, au_loss: the per-task terms (unweighted).
        valence_arousal: `[B, T, 2]` predictions in [-1, 1] (tanh).
        expression_logits: `[B, T, num_expressions]`.
        au_logits: `[B, T, num_aus]` (sigmoid gives occurrence probabilities).
        last_hidden_state: `[B, T, encoder_width]` encoder output per frame.

    A task added to the table (`tasks_abaw_fusion.register_task`) adds its output and loss fields as keys.
    """

    loss: torch.FloatTensor | None = None
    valence_loss: torch.FloatTensor | None = None
    arousal_loss: torch.FloatTensor | None = None
    expression_loss: torch.FloatTensor | None = None
    au_loss: torch.FloatTensor | None = None
    valence_arousal: torch.FloatTensor | None = None
    expression_logits: torch.FloatTensor | None = None
    au_logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


def fusion_output(**values) -> AbawFusionOutput:
    """An `AbawFusionOutput` of ``values``; those of a task added to the table (not fields of the class) become
    extra keys, read like the others (``output.toy_logits``, ``output["toy_logits"]``). The model and the ONNX
    runtime build their outputs here."""
    fields = {field.name for field in dataclasses.fields(AbawFusionOutput)}
    output = AbawFusionOutput(**{name: value for name, value in values.items() if name in fields})
    for name, value in values.items():
        if name not in fields and value is not None:
            output[name] = value
    return output


def check_features(config, features, feature_kwargs=None) -> dict[str, torch.Tensor]:
    """The features of one call, checked against ``config``: every extractor it names, ``[B, T, dim]`` each with one
    ``B, T``, finite values; in the config's order. `AbawFusionModel` and the ONNX runtime both call this."""
    features = dict(features or {})
    overlap = set(features) & set(feature_kwargs or {})
    if overlap:
        raise ValueError(f"features {sorted(overlap)} were given both in `features=` and as keyword arguments")
    features.update(feature_kwargs or {})
    expected = config.feature_dims
    unknown = sorted(set(features) - set(expected))
    if unknown:
        raise ValueError(f"unknown extractor(s) {unknown}; this model was configured for {list(expected)}")
    missing = [name for name in expected if name not in features]
    if missing:
        shapes = ", ".join(f"{name}: [B, T, {expected[name]}]" for name in missing)
        raise ValueError(f"missing extractor input(s) {missing}; expected {shapes}")
    reference = None
    for name, dim in expected.items():
        tensor = features[name]
        if tensor.dim() != 3 or tensor.shape[-1] != dim:
            raise ValueError(f"extractor {name!r}: expected shape [B, T, {dim}], got {list(tensor.shape)}")
        if reference is None:
            reference = tensor.shape[:2]
        elif tensor.shape[:2] != reference:
            raise ValueError(
                f"extractor {name!r}: batch/time shape {list(tensor.shape[:2])} differs from {list(reference)}"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(
                f"extractor {name!r}: features contain NaN or Inf; missing vectors must be given through "
                "feature_mask, not as NaN"
            )
    return {name: features[name] for name in expected}



def check_frame_index(config, frame_index: torch.Tensor) -> None:
    """With a position encoding, ``frame_index`` (padding already 0) must lie in ``[0, max_window)``."""
    if config.position_encoding == "none":
        return
    if int(frame_index.min()) < 0 or int(frame_index.max()) >= config.max_window:
        raise ValueError(
            f"frame_index must lie in [0, max_window={config.max_window}); got "
            f"[{int(frame_index.min())}, {int(frame_index.max())}]"
        )


def sinusoidal_position_encoding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Transformer sine/cosine encoding evaluated at (possibly gapped) integer positions `[B, T]`."""
    half = width // 2
    frequencies = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / max(half, 1))
    )
    angles = positions.float().unsqueeze(-1) * frequencies
    encoding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if width % 2:
        encoding = F.pad(encoding, (0, 1))
    return encoding


class AbawSelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))


class AbawEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm transformer encoder block."""

    def __init__(self, config: AbawFusionConfig):
        super().__init__()
        width = config.encoder_width
        self.attention_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.attention = AbawSelfAttention(width, config.num_attention_heads, config.attention_dropout_prob)
        self.mlp_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(width, int(width * config.mlp_ratio)),
            nn.GELU(),
            nn.Dropout(config.hidden_dropout_prob),
            nn.Linear(int(width * config.mlp_ratio), width),
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.dropout(self.attention(self.attention_norm(hidden), key_mask))
        return hidden + self.dropout(self.mlp(self.mlp_norm(hidden)))


class AbawFusionPreTrainedModel(PreTrainedModel):
    config_class = AbawFusionConfig
    base_model_prefix = "abaw_fusion"
    main_input_name = "features"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AbawEncoderLayer"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)
        elif isinstance(module, AbawFusionModel):
            init.trunc_normal_(module.missing_embeddings, std=std)
            if module.cls_token is not None:
                init.trunc_normal_(module.cls_token, std=std)
                init.trunc_normal_(module.token_type_embeddings, std=std)


class AbawFusionModel(AbawFusionPreTrainedModel):
    """Fuses per-frame features of several extractors and predicts VA, expression and AUs per frame.

    Inputs are one tensor per extractor `[B, T, D_i]` (a dict `features=` or keyword arguments named after the
    extractors), `attention_mask [B, T]` (frame present), `feature_mask` (per extractor `[B, T]`, vector present),
    `frame_index [B, T]` (frame number relative to the window start, gaps allowed) and optional labels
    with the ABAW missing markers (VA -5, expression -1, AU -1).
    """

    def __init__(self, config: AbawFusionConfig):
        super().__init__(config)
        names = config.feature_names
        self.affine = nn.ModuleDict({name: nn.Linear(dim, config.hidden_size) for name, dim in config.feature_dims.items()})
        # A missing vector is replaced by a learned embedding, so it can never look like a real one.
        self.missing_embeddings = nn.Parameter(torch.zeros(len(names), config.hidden_size))
        width = config.encoder_width
        if config.fusion == "concat":
            concat_width = config.hidden_size * len(names)
            self.concat_projection = nn.Linear(concat_width, width) if config.concat_projection else None
            self.position_embeddings = (
                nn.Embedding(config.max_window, config.hidden_size) if config.position_encoding == "learned" else None
            )
            self.cls_token = None
            self.token_type_embeddings = None
        else:
            self.concat_projection = None
            self.position_embeddings = None
            self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
            self.token_type_embeddings = nn.Parameter(torch.zeros(len(names), width))
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([AbawEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.tasks = tasks_of(config)  # config.tasks (None: ABAW's three)
        for task in self.tasks:  # va_head, expression_head, au_head: one per row of the task table
            self.add_module(f"{task.name}_head", nn.Linear(width, task.head_width(config)))
        self.register_buffer("au_loss_weights", torch.tensor(config.au_loss_weights, dtype=torch.float32), persistent=False)
        self.gradient_checkpointing = False
        self.post_init()

    def _head_output(self, task, hidden: torch.Tensor) -> torch.Tensor:
        """The task's head on the encoder output; ``tanh`` is applied inside the head, logits stay logits."""
        output = getattr(self, f"{task.name}_head")(hidden)
        return torch.tanh(output) if task.activation == "tanh" else output

    # ----- input checking -----------------------------------------------------------------------------------

    def _collect_features(self, features, feature_kwargs) -> dict[str, torch.Tensor]:
        return check_features(self.config, features, feature_kwargs)

    def _check_labels(self, labels: dict) -> None:
        """Each task's labels against its row: a value of its activation's range or its missing marker."""
        for task in self.tasks:
            values = labels.get(task.name)
            if values is None:
                continue
            words, width = task.words or task.name, task.head_width(self.config)
            if task.activation == "tanh":
                ok = (values == task.missing) | ((values >= -1.0) & (values <= 1.0))
                rule = f"lie in [-1, 1] or be {task.missing} (missing)"
            elif task.activation == "softmax":
                ok = (values == task.missing) | ((values >= 0) & (values < width))
                rule = f"be in 0..{width - 1} or {task.missing} (missing)"
            else:
                if values.shape[-1] != width:
                    raise ValueError(f"{task.labels}: expected last dim {width}, got {list(values.shape)}")
                ok = (values == task.missing) | (values == 0) | (values == 1)
                rule = f"be 0, 1 or {task.missing} (missing)"
            if not bool(ok.all()):
                raise ValueError(f"{words} labels must {rule}; got {values[~ok][:5].tolist()}")

    # ----- forward ---------------------------------------------------------------------------------------------

    def _embed_frames(self, features, feature_mask):
        """Affine each feature to hidden_size and swap missing vectors for the learned missing embedding."""
        embedded = []
        for i, (name, tensor) in enumerate(features.items()):
            hidden = self.affine[name](tensor.to(self.affine[name].weight.dtype))
            if feature_mask is not None and name in feature_mask:
                present = feature_mask[name].to(torch.bool).unsqueeze(-1)
            else:
                present = torch.ones_like(hidden[..., :1], dtype=torch.bool)
            # always through torch.where: the missing embedding stays in the graph, as DDP expects
            hidden = torch.where(present, hidden, self.missing_embeddings[i].to(hidden.dtype))
            embedded.append(hidden)
        return embedded

    def _position_encoding(self, frame_index: torch.Tensor, width: int, dtype) -> torch.Tensor | None:
        if self.config.position_encoding == "none":
            return None
        check_frame_index(self.config, frame_index)
        if self.position_embeddings is not None:
            return self.position_embeddings(frame_index).to(dtype)
        return sinusoidal_position_encoding(frame_index, width).to(dtype)

    def _encode(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # a sequence with no valid key (only padding) would give NaN attention: let it attend to itself
        key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
        hidden = self.embedding_dropout(hidden)
        for layer in self.layers:
            hidden = layer(hidden, key_mask)
        return self.final_norm(hidden)

    def forward(
        self,
        features: dict[str, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        feature_mask: dict[str, torch.Tensor] | None = None,
        frame_index: torch.Tensor | None = None,
        valence_arousal_labels: torch.Tensor | None = None,
        expression_labels: torch.Tensor | None = None,
        au_labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **feature_kwargs: torch.Tensor,
    ) -> AbawFusionOutput | tuple:
        # the labels of a task added to the table come as keyword arguments named by its row (``Task.labels``)
        labels = {task.name: feature_kwargs.pop(task.labels, None) for task in self.tasks
                  if task.name not in ABAW_TASK_NAMES}
        labels.update(va=valence_arousal_labels, expression=expression_labels, au=au_labels)
        features = self._collect_features(features, feature_kwargs)
        self._check_labels(labels)
        first = next(iter(features.values()))
        batch, length = first.shape[:2]
        device = first.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        attention_mask = attention_mask.to(torch.bool)
        if frame_index is None:
            frame_index = torch.arange(length, device=device).expand(batch, length)
        frame_index = torch.where(attention_mask, frame_index.long(), torch.zeros_like(frame_index.long()))

        embedded = self._embed_frames(features, feature_mask)
        if self.config.fusion == "concat":
            # paper eq. (1)-(3): affine + PE per feature, concatenate per frame, encoder over the T frames
            position = self._position_encoding(frame_index, self.config.hidden_size, embedded[0].dtype)
            if position is not None:
                embedded = [hidden + position for hidden in embedded]
            hidden = torch.cat(embedded, dim=-1)
            if self.concat_projection is not None:
                hidden = self.concat_projection(hidden)
            hidden = self._encode(hidden, attention_mask)
        else:
            # released code: per frame, one token per extractor plus a cls token; missing vectors are masked keys
            tokens = torch.stack(embedded, dim=2) + self.token_type_embeddings.to(embedded[0].dtype)
            tokens = tokens.reshape(batch * length, len(embedded), -1)
            cls = self.cls_token.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
            present = [
                feature_mask[name].to(torch.bool) if feature_mask is not None and name in feature_mask
                else torch.ones(batch, length, dtype=torch.bool, device=device)
                for name in features
            ]
            key_mask = torch.stack(present, dim=-1).reshape(batch * length, len(embedded))
            key_mask = torch.cat([torch.ones_like(key_mask[:, :1]), key_mask], dim=1)
            encoded = self._encode(torch.cat([cls, tokens], dim=1), key_mask)
            hidden = encoded[:, 0].reshape(batch, length, -1)

        heads = {task.name: self._head_output(task, hidden) for task in self.tasks}

        loss, parts = None, {}
        if any(labels.get(task.name) is not None for task in self.tasks):
            loss = hidden.new_zeros(())
            for task in self.tasks:  # each task's named loss (`losses_abaw_fusion.LOSSES`) on its labelled frames
                if labels.get(task.name) is None:
                    continue
                frame_valid = attention_mask if labels[task.name].dim() == 2 else attention_mask.unsqueeze(-1)
                targets = labels[task.name].masked_fill(~frame_valid, task.missing)
                term, task_parts = LOSSES[task.loss](task, heads[task.name], targets, self)
                loss = loss + task.weight(self.config) * term
                parts.update(task_parts)

        output = fusion_output(loss=loss, **parts, **{task.output: heads[task.name] for task in self.tasks},
                               last_hidden_state=hidden)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()


__all__ = ["AbawFusionModel", "AbawFusionOutput", "AbawFusionPreTrainedModel", "check_features", "check_frame_index",
           "fusion_output"]
