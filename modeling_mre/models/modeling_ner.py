"""
What every entity-recognition (MNER) method shares: the words' states gathered from their first
subwords, a linear-chain CRF over the words' BIO tags (MMIB's and HVPNeT's released NER code decode
with one), the tagging loss, decoding with per-word probabilities, and the output.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput

from .modeling_mre import class_reference


@dataclass
class EntityRecognitionOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Total training loss: the tagging loss plus every weighted auxiliary loss.
        classification_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The tagging loss alone: the CRF's negative log-likelihood of the gold tags of each sentence's
            words (or, without the CRF, the words' cross-entropy), averaged over sentences or summed
            (`classification_loss_reduction`).
        logits (`torch.FloatTensor` of shape `(batch_size, seq_len, num_labels)`):
            Each token's tag scores (the CRF's emissions). Only the first subword of each word is read,
            where `first_subword_mask` is True; `decode` turns them into the words' tags.
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
            The text encoder's, with `output_hidden_states=True` / `output_attentions=True`.
    """

    loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def gather_words(states: torch.Tensor, first_subword_mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.BoolTensor]:
    """
    The states of each sentence's words, left-aligned: (batch, seq_len, ...) at `first_subword_mask`
    (batch, seq_len) -> (batch, max_words, ...) and the mask of real words (batch, max_words).
    """
    counts = first_subword_mask.sum(1)  # (batch,)
    max_words = max(int(counts.max()), 1) if counts.numel() else 1
    # A stable sort puts each row's first subwords first, in their order.
    order = torch.argsort((~first_subword_mask).int(), dim=1, stable=True)[:, :max_words]  # (batch, max_words)
    index = order.view(*order.shape, *([1] * (states.dim() - 2))).expand(-1, -1, *states.shape[2:])
    word_mask = torch.arange(max_words, device=states.device)[None] < counts[:, None]
    return states.gather(1, index), word_mask


class ConditionalRandomField(nn.Module):
    """
    A linear-chain CRF over tags (Lafferty et al., 2001) with start, end and transition scores, as
    pytorch-crf (the package MMIB and HVPNeT import) defines it: the score of tags `y` for emissions `e`
    is `start[y_0] + sum_i e_i[y_i] + sum_i transitions[y_{i-1}, y_i] + end[y_last]`. Sequences are
    left-aligned: `mask` (batch, length) is True on a prefix of each row, at least one position long.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [from, to]

    def _check(self, mask: torch.BoolTensor):
        if mask.numel() and not mask[:, 0].all():
            raise ValueError("every sentence needs at least one word for the CRF (its mask must start True)")

    def log_partition(self, emissions: torch.Tensor, mask: torch.BoolTensor) -> torch.Tensor:
        """log Z of each sentence, (batch,): the forward algorithm over (batch, length, tags) emissions."""
        self._check(mask)
        scores = self.start_transitions + emissions[:, 0]  # (batch, tags)
        for i in range(1, emissions.shape[1]):
            # (batch, from, 1) + (from, to) + (batch, 1, to) -> logsumexp over `from`
            step = torch.logsumexp(scores[:, :, None] + self.transitions + emissions[:, i, None], dim=1)
            scores = torch.where(mask[:, i, None], step, scores)
        return torch.logsumexp(scores + self.end_transitions, dim=1)

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.BoolTensor) -> torch.Tensor:
        """log p(tags | emissions) of each sentence, (batch,); tags beyond a sentence's mask are ignored."""
        tags = tags.masked_fill(~mask, 0)
        gold = emissions.gather(2, tags[..., None]).squeeze(-1)  # (batch, length)
        path = self.start_transitions[tags[:, 0]] + (gold * mask).sum(1)
        path = path + (self.transitions[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return path + self.end_transitions[last] - self.log_partition(emissions, mask)

    def marginals(self, emissions: torch.Tensor, mask: torch.BoolTensor) -> torch.Tensor:
        """p(y_i = t | emissions), (batch, length, tags): the gradient of log Z with respect to the emissions."""
        with torch.enable_grad():
            emissions = emissions.detach().float().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.log_partition(emissions, mask).sum(), emissions)
        return gradient * mask[..., None]

    def viterbi(self, emissions: torch.Tensor, mask: torch.BoolTensor) -> list[list[int]]:
        """The most likely tags of each sentence, as many as its mask has words."""
        self._check(mask)
        scores = self.start_transitions + emissions[:, 0]  # (batch, tags)
        backpointers = []
        for i in range(1, emissions.shape[1]):
            step, best_previous = (scores[:, :, None] + self.transitions).max(dim=1)  # (batch, to)
            backpointers.append(best_previous)
            scores = torch.where(mask[:, i, None], step + emissions[:, i], scores)
        best_last = (scores + self.end_transitions).argmax(dim=1).tolist()
        lengths = mask.sum(1).tolist()
        paths = []
        for row, (last, length) in enumerate(zip(best_last, lengths)):
            path = [last]
            for pointers in reversed(backpointers[: length - 1]):
                path.append(int(pointers[row, path[-1]]))
            paths.append(path[::-1])
        return paths


class EntityRecognitionMixin:
    """
    What a token-classification (MNER) method adds to `MREPreTrainedModel`: it tags each word (read at its
    first subword, `first_subword_mask`, as the `MNERProcessor` gives it) from its token states, with a
    CRF over the words' tags unless `config.use_crf` is False (then each word is classified alone).
    A method builds its tagger with `build_tagger(hidden_size)` and ends its forward with `tag(...)`.
    """

    # Its processor and pipeline are the task's, known to registration (`modeling_mre.py`'s `TASK_CLASSES`).
    task: ClassVar[str] = "token-classification"
    # Saved with its code for AutoModelForTokenClassification, and for AutoModel (`save_pretrained`).
    _auto_class = "AutoModelForTokenClassification"

    def save_pretrained(self, save_directory, *args, **kwargs):
        auto_map = getattr(self.config, "auto_map", None) or {}
        self.config.auto_map = {**auto_map, "AutoModel": class_reference(type(self))}
        super().save_pretrained(save_directory, *args, **kwargs)

    def build_tagger(self, hidden_size: int):
        self.classifier = nn.Linear(hidden_size, self.config.num_labels)
        self.crf = ConditionalRandomField(self.config.num_labels) if self.config.use_crf else None

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ConditionalRandomField):
            # pytorch-crf's initialisation, which MMIB and HVPNeT train from.
            for parameter in (module.start_transitions, module.end_transitions, module.transitions):
                init.uniform_(parameter, -0.1, 0.1)

    def tag(
        self, token_states: torch.Tensor, first_subword_mask: torch.BoolTensor, labels: torch.LongTensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Each token's tag scores (batch, seq_len, num_labels) and, with `labels` (batch, seq_len; the tag
        ids at first subwords, -100 elsewhere), the tagging loss over the words.
        """
        logits = self.classifier(token_states)  # (batch, seq_len, num_labels)
        if labels is None:
            return logits, None
        word_logits, word_mask = gather_words(logits, first_subword_mask)  # (batch, words, num_labels)
        word_labels, _ = gather_words(labels, first_subword_mask)  # (batch, words)
        if (word_labels[word_mask] < 0).any():
            raise ValueError("every word needs its tag in `labels` at its first subword (MNERProcessor's word_labels)")
        reduction = self.config.classification_loss_reduction
        if self.crf is not None:
            negative_log_likelihood = -self.crf.log_likelihood(word_logits.float(), word_labels, word_mask)
            loss = negative_log_likelihood.sum() if reduction == "sum" else negative_log_likelihood.mean()
        else:
            losses = F.cross_entropy(
                word_logits.float().transpose(1, 2), word_labels.masked_fill(~word_mask, -100), reduction="none"
            )
            loss = losses.sum() if reduction == "sum" else (losses.sum(1) / word_mask.sum(1).clamp(min=1)).mean()
        return logits, loss

    def decode(
        self, logits: torch.Tensor, first_subword_mask: torch.BoolTensor
    ) -> tuple[list[list[int]], list[list[float]]]:
        """
        Each sentence's word tags (the CRF's most likely sequence, or each word's best tag without it)
        and each word's probability of its tag (the CRF's marginal, or the softmax).
        """
        word_logits, word_mask = gather_words(logits.float(), first_subword_mask)
        if self.crf is not None:
            paths = self.crf.viterbi(word_logits, word_mask)
            probabilities = self.crf.marginals(word_logits, word_mask)
        else:
            probabilities = word_logits.softmax(-1)
            paths = [row[:length] for row, length in zip(probabilities.argmax(-1).tolist(), word_mask.sum(1).tolist())]
        scores = [[float(probabilities[row, i, tag]) for i, tag in enumerate(path)] for row, path in enumerate(paths)]
        return paths, scores
