#!/usr/bin/env python
"""
Can a learned pair term on the frozen encoder carry to relations nobody trained on? (issue 39)

`relation_retrieval.py` trains the whole encoder, which moves it away from the geometry that makes the
untrained sentence-to-description cosine work on new relations. Here the encoder stays as pretrained and
a term is learned beside that cosine, starting at zero so that a run begins exactly at the reference:

    score(x, r) = cos(s, d) / temperature + (U q) . (V k)

with q = [s; h; t; c], the sentence's mean state and the mean states of its head, its tail and the
words between them, and k = [d; d_h; d_t], the description's mean state and those of the entities it
was filled with (`{head} causes {tail}`), so that the term can read which entity plays which role. V
starts at zero. Trained with cross-entropy over each example's own relation against other relations of
its set (and its own relation read the other way, `{tail} causes {head}`), on the rows and split of
`relation_retrieval.py` (the same seed holds out the same NYT and PubMed relations). The number of
steps is chosen per seed on the held-out relations; SemEval's 17 relations are evaluated once, at the
chosen step, against the untrained cosine (the same figures as `relation_retrieval.py`'s untrained row).

Every text is encoded once (about 130,000 short texts; 10 to 20 minutes on 2 CPU cores) and the
features are kept in `--cache` between runs, so the seeds and steps cost seconds.

    python benchmarks/relation_residual.py --zeroshot_dir ../shared/data/zeroshot --mnre_dir ../shared/data/mnre \
        --seeds 42 43 44 --output_dir benchmarks/results/roc-retrieval
"""

import argparse
import json
import random
from pathlib import Path

import torch
from common import provenance  # benchmarks/common.py
from new_relations import macro_f1
from relation_retrieval import SYMMETRIC, entities, relation_sets, semeval_task, split_sets
from torch.nn import functional as F
from transformers import AutoModel, AutoTokenizer

from modeling_mre import embedded_text_backbone
from modeling_mre.models.layers_mre import masked_mean


def filled(template: str, head: str, tail: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """A description filled with the pair's entities, and the character spans they take in it."""
    text, spans = "", {}
    for piece in template.replace("{head}", "\0head\0").replace("{tail}", "\0tail\0").split("\0"):
        if piece in ("head", "tail"):
            spans.setdefault(piece, (len(text), len(text) + len(head if piece == "head" else tail)))
            piece = head if piece == "head" else tail
        text += piece
    return text, spans["head"], spans["tail"]


class Encoder:
    """The frozen MiniLM: each text's mean state and the mean states of character spans in it."""

    def __init__(self):
        folder = embedded_text_backbone()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    @torch.inference_mode()
    def __call__(self, texts: list[str], spans: list[list[tuple[int, int]]], max_length: int) -> torch.Tensor:
        """`(texts, 1 + spans, hidden)`: the mean over all tokens, then over each span's tokens (the mean if none)."""
        out = []
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            encoded = self.tokenizer(
                chunk,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            offsets = encoded.pop("offset_mapping")  # (batch, length, 2)
            states = self.model(**encoded).last_hidden_state  # (batch, length, hidden)
            mean = masked_mean(states, encoded["attention_mask"])
            pooled = [mean]
            for k in range(len(spans[0])):
                bounds = torch.tensor([spans[start + i][k] for i in range(len(chunk))])  # (batch, 2)
                inside = (
                    (offsets[..., 1] > bounds[:, None, 0])
                    & (offsets[..., 0] < bounds[:, None, 1])
                    & (offsets[..., 1] > offsets[..., 0])
                )
                span_mean = masked_mean(states, inside.long())
                pooled.append(torch.where(inside.any(-1, keepdim=True), span_mean, mean))
            out.append(torch.stack(pooled, 1).half())
        return torch.cat(out)


def sentence_spans(row: dict) -> list[tuple[int, int]]:
    """The head, the tail, and the characters between them."""
    (hs, he), (ts, te) = row["head"], row["tail"]
    return [(hs, he), (ts, te), (min(he, te), max(hs, ts))]


class Features:
    """
    Sentences and filled descriptions, each encoded once, addressed by row and by text; kept in `cache`
    and read back from it while it holds the same rows and texts.
    """

    def __init__(self, rows: list[dict], descriptions: dict[str, tuple], cache: Path):
        self.row_index = {id(row): i for i, row in enumerate(rows)}
        self.text_index = {text: i for i, text in enumerate(descriptions)}
        held = torch.load(cache, weights_only=True) if cache.exists() else {}
        if held.get("texts") == list(descriptions) and held.get("rows") == [r["text"] for r in rows]:
            self.sentences, self.descriptions = held["sentences"], held["descriptions"]
            return
        encoder = Encoder()
        print(f"encoding {len(rows)} sentences and {len(descriptions)} descriptions", flush=True)
        self.sentences = encoder([r["text"] for r in rows], [sentence_spans(r) for r in rows], 128)
        self.descriptions = encoder(list(descriptions), [list(s) for s in descriptions.values()], 48)
        held = {"texts": list(descriptions), "rows": [r["text"] for r in rows]}
        torch.save(held | {"sentences": self.sentences, "descriptions": self.descriptions}, cache)


def described(relations: dict[str, list[str]], relation: str, row: dict, swap: bool = False) -> list[tuple]:
    """The relation's paraphrases filled with the row's pair (exchanged with `swap`)."""
    head, tail = entities(row)
    return [filled(p, *((tail, head) if swap else (head, tail))) for p in relations[relation]]


class PairTerm(torch.nn.Module):
    """(U q) . (V k), V at zero: the learned part of the score."""

    def __init__(self, hidden: int, rank: int):
        super().__init__()
        self.query = torch.nn.Linear(4 * hidden, rank)
        self.key = torch.nn.Linear(3 * hidden, rank)
        torch.nn.init.zeros_(self.key.weight), torch.nn.init.zeros_(self.key.bias)

    def forward(self, sentences: torch.Tensor, candidates: torch.Tensor, temperature: float) -> torch.Tensor:
        # sentences: (batch, 4, hidden); candidates: (batch, relations, 3, hidden)
        cosine = torch.einsum(
            "bh,brh->br", F.normalize(sentences[:, 0], dim=-1), F.normalize(candidates[:, :, 0], dim=-1)
        )
        query = self.query(sentences.flatten(1))  # (batch, rank)
        key = self.key(candidates.flatten(2))  # (batch, relations, rank)
        return cosine / temperature + torch.einsum("bk,brk->br", query, key)


def candidate_features(features: Features, texts: list[list[tuple]]) -> torch.Tensor:
    """`(relations, 3, hidden)`: each relation's paraphrases averaged (mean states normalised first)."""
    out = []
    for paraphrases in texts:
        states = features.descriptions[[features.text_index[t[0]] for t in paraphrases]].float()
        states[:, 0] = F.normalize(states[:, 0], dim=-1)
        out.append(states.mean(0))
    return torch.stack(out)


@torch.no_grad()
def accuracy(term, features, rows, relations, temperature) -> tuple[float, list[str]]:
    """The share of `rows` whose relation scores highest among `relations` (all paraphrases), and the predictions."""
    names = list(relations)
    predictions = []
    for row in rows:
        candidates = candidate_features(features, [described(relations, n, row) for n in names])
        sentence = features.sentences[features.row_index[id(row)]].float()
        scores = term(sentence[None], candidates[None], temperature)[0]
        predictions.append(names[scores.argmax().item()])
    return sum(p == r["relation"] for p, r in zip(predictions, rows)) / len(rows), predictions


def semeval_scores(predictions: list[str], rows: list[dict], relations: dict) -> dict:
    references = [row["relation"] for row in rows]
    return {
        "semeval_accuracy": sum(p == r for p, r in zip(predictions, references)) / len(rows),
        "semeval_macro_f1": macro_f1(predictions, references, list(relations)),
        "semeval_accuracy_undirected": sum(p[:-7] == r[:-7] for p, r in zip(predictions, references)) / len(rows),
    }


def batches(rows: list, size: int, rng: random.Random, steps: int):
    """`steps` batches of `size`, through `rows` reshuffled at each pass."""
    step = 0
    while True:
        rng.shuffle(rows)
        for start in range(0, len(rows) - size + 1, size):
            yield rows[start : start + size]
            step += 1
            if step == steps:
                return


def key(row: dict) -> tuple:
    """A row as every seed's split holds it: the sets are read again for each seed."""
    return row["text"], tuple(row["head"]), tuple(row["tail"]), row["relation"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zeroshot_dir", type=Path, required=True)
    parser.add_argument("--mnre_dir", type=Path, default=None)
    parser.add_argument("--mnre_rows", type=int, default=2000)
    parser.add_argument("--hold_out", type=int, nargs=2, default=[5, 2], metavar=("NYT", "PUBMED"))
    parser.add_argument(
        "--negatives", type=int, default=10, help="Other relations of its set each training example meets."
    )
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[10, 25, 50, 100, 200, 400, 800],
        help="Chosen among, per seed, on held-out (an epoch is about 100 steps).",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/relation_residual.pt"))
    parser.add_argument("--output_dir", type=Path, default=None)
    args = parser.parse_args()

    # Every seed's split, drawn as relation_retrieval.py draws it, so that one encoding serves them all.
    splits = {}
    for seed in args.seeds:
        splits[seed] = split_sets(
            relation_sets(args.zeroshot_dir, args.mnre_dir), args.mnre_rows, args.hold_out, random.Random(seed)
        )
    semeval_rows, semeval_relations = semeval_task(args.zeroshot_dir)
    rows = {}  # every row any seed trains or evaluates on, keyed by its text and pair
    for train, _, (held_rows, _), _ in splits.values():
        for row in train + held_rows:
            rows.setdefault(key(row), row)
    for row in semeval_rows:
        rows.setdefault(key(row), row)
    # Training candidates: drawn once per row (seed 0), filtered per seed of the relations it holds out.
    all_sets = relation_sets(args.zeroshot_dir, args.mnre_dir)
    draw, training_candidates, descriptions = random.Random(0), {}, {}
    for row in rows.values():
        if row["set"] not in all_sets:  # SemEval: never trained on
            continue
        relations = all_sets[row["set"]][1]
        others = draw.sample([r for r in relations if r != row["relation"]], min(args.negatives, len(relations) - 1))
        chosen = {r: [draw.choice(described(relations, r, row))] for r in [row["relation"], *others]}
        if row["relation"] not in SYMMETRIC:
            chosen["swapped"] = [draw.choice(described(relations, row["relation"], row, swap=True))]
        training_candidates[key(row)] = chosen
        descriptions |= {text: spans for texts in chosen.values() for text, *spans in texts}
    for _, _, (held_rows, held_relations), _ in splits.values():
        for row in held_rows:
            for name in held_relations:
                descriptions |= {t: s for t, *s in described(held_relations, name, row)}
    for row in semeval_rows:
        for name in semeval_relations:
            descriptions |= {t: s for t, *s in described(semeval_relations, name, row)}

    features = Features(list(rows.values()), descriptions, args.cache)

    for seed, (train, trained_relations, (held_rows, held_relations), held) in splits.items():
        torch.manual_seed(seed)
        rng = random.Random(seed)
        held_rows = [rows[key(r)] for r in held_rows]
        train = [rows[key(r)] for r in train]
        # Each training row: its own relation first, then the others its seed trains on.
        batches_rows = []
        for row in train:
            chosen = training_candidates[key(row)]
            kept = [n for n in chosen if n == "swapped" or n in trained_relations[row["set"]]]
            batches_rows.append((row, kept))
        hidden = features.sentences.shape[-1]
        term = PairTerm(hidden, args.rank)
        results = {"untrained": {}, "steps": {}}
        results["untrained"]["held_out_accuracy"], _ = accuracy(
            term, features, held_rows, held_relations, args.temperature
        )
        optimizer = torch.optim.AdamW(term.parameters(), lr=args.learning_rate, weight_decay=0.01)
        states = {}
        for step, chunk in enumerate(batches(batches_rows, args.batch_size, rng, max(args.steps)), start=1):
            width = max(len(kept) for _, kept in chunk)
            candidates = torch.zeros(len(chunk), width, 3, hidden)
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for i, (row, kept) in enumerate(chunk):
                texts = [training_candidates[key(row)][n] for n in kept]
                candidates[i, : len(kept)] = candidate_features(features, texts)
                mask[i, : len(kept)] = True
            sentences = features.sentences[[features.row_index[id(r)] for r, _ in chunk]].float()
            logits = term(sentences, candidates, args.temperature).masked_fill(~mask, float("-inf"))
            loss = F.cross_entropy(logits, torch.zeros(len(chunk), dtype=torch.long))  # own relation first
            loss.backward()
            optimizer.step(), optimizer.zero_grad()
            if step in args.steps:
                held_accuracy, _ = accuracy(term, features, held_rows, held_relations, args.temperature)
                results["steps"][step] = {"held_out_accuracy": held_accuracy, "loss": loss.item()}
                states[step] = {k: v.clone() for k, v in term.state_dict().items()}
                print(f"seed {seed} step {step}: held-out {held_accuracy:.4f} loss {loss.item():.3f}", flush=True)
        chosen = max(args.steps, key=lambda step: results["steps"][step]["held_out_accuracy"])
        _, predicted = accuracy(
            PairTerm(hidden, args.rank), features, semeval_rows, semeval_relations, args.temperature
        )
        results["untrained"] |= semeval_scores(predicted, semeval_rows, semeval_relations)
        term.load_state_dict(states[chosen])
        held_accuracy = results["steps"][chosen]["held_out_accuracy"]
        _, predicted = accuracy(term, features, semeval_rows, semeval_relations, args.temperature)
        results["trained"] = {"steps": chosen, "held_out_accuracy": held_accuracy}
        results["trained"] |= semeval_scores(predicted, semeval_rows, semeval_relations)
        print(f"seed {seed}: untrained {results['untrained']}\n  trained {results['trained']}", flush=True)
        summary = provenance() | {
            "kind": "relation_residual",
            "seed": seed,
            "arguments": {k: str(v) for k, v in vars(args).items()},
            "held_out_relations": held,
            "training_rows": {name: sum(r["set"] == name for r in train) for name in trained_relations},
            **results,
        }
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            (args.output_dir / f"residual_seed{seed}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
