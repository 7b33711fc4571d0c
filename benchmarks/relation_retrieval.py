#!/usr/bin/env python
"""
Does training across relation sets teach an encoder what a relation description means? (issue 39)

A bi-encoder on the embedded MiniLM: a sentence (mean-pooled) against each relation's descriptions
filled with the pair's entities (`{head} causes {tail}`), trained contrastively on FewRel 2.0's NYT and
PubMed relation sets and MNRE, each example against its own set's relations (`--negatives` of them
drawn per example, and with `--swap_negatives` its own relation with head and tail exchanged, so that
the order of the pair must matter). Some relations of each FewRel set are held out of training
(`--hold_out`, drawn with the seed): accuracy among them is what a setting is chosen on. SemEval-2010
Task 8's 17 relations (never trained or chosen on) are then added by the descriptions of
`new_relations.py`, on its fixed sample of 680 sentences, against the untrained encoder that starts
training: the question ROC's retrieval has to answer before it is built into the model.

    python benchmarks/relation_retrieval.py --zeroshot_dir ../shared/data/zeroshot --mnre_dir ../shared/data/mnre \
        --max_steps 100 --seed 42 --output_json benchmarks/results/roc-retrieval/filled_seed42.json

The descriptions of the training sets are ours, built from each relation's name (and, for NYT, its
Wikidata label, `pid2name_nyt.json`, and with `--wikidata_definitions` the property's Wikidata description
too); MNRE's name the pair as `ROCConfig`'s paraphrases describe it. `benchmarks/retrieval_table.py`
tabulates the result files of this script and of `relation_residual.py` over seeds.
"""

import argparse
import json
import random
import re
import time
from pathlib import Path

import torch
from common import provenance  # benchmarks/common.py
from new_relations import macro_f1, semeval_relations, semeval_sample, text_row  # benchmarks/new_relations.py
from torch.nn import functional as F
from transformers import AutoModel, AutoTokenizer

from modeling_mre import embedded_text_backbone, load_fewrel, load_mnre
from modeling_mre.models.layers_mre import masked_mean
from modeling_mre.models.processing_mre import fill_description


# MNRE's relations with the pair named, written from ROCConfig's paraphrases (the symmetric ones say so).
MNRE_FILLED = {
    "/per/per/parent": ["{tail} is a parent of {head}", "{head} is the child of {tail}"],
    "/per/per/siblings": ["{head} and {tail} are siblings", "{head} is a brother or sister of {tail}"],
    "/per/per/couple": ["{head} and {tail} are a couple", "{head} is married to or dating {tail}"],
    "/per/per/neighbor": ["{head} and {tail} are neighbors", "{head} lives next to {tail}"],
    "/per/per/peer": ["{head} and {tail} are peers or colleagues", "{head} works or plays together with {tail}"],
    "/per/per/charges": ["{head} is in charge of {tail}", "{head} coaches, leads or manages {tail}"],
    "/per/per/alumi": ["{head} and {tail} went to the same school", "{head} studied together with {tail}"],
    "/per/per/alternate_names": ["{tail} is another name of {head}", "{head} is also known as {tail}"],
    "/per/org/member_of": ["{head} is a member of {tail}", "{head} plays for, works for or belongs to {tail}"],
    "/per/loc/place_of_residence": ["{head} lives in {tail}", "{tail} is where {head} resides"],
    "/per/loc/place_of_birth": ["{head} was born in {tail}", "{tail} is the birthplace of {head}"],
    "/org/org/alternate_names": [
        "{tail} is another name of the organization {head}",
        "{head} is also known as {tail}",
    ],
    "/org/org/subsidiary": ["{head} is a subsidiary of {tail}", "{tail} owns or controls {head}"],
    "/org/loc/locate_at": ["{head} is located in {tail}", "{tail} is where {head} is based"],
    "/loc/loc/contain": ["{head} contains {tail}", "{tail} is located inside {head}"],
    "/per/misc/present_in": ["{head} is present at {tail}", "{head} appears in or attends {tail}"],
    "/per/misc/awarded": ["{head} received the award {tail}", "{head} won {tail}"],
    "/per/misc/race": ["{tail} is the race or ethnicity of {head}", "{head} belongs to the ethnic group {tail}"],
    "/per/misc/religion": ["{tail} is the religion of {head}", "{head} follows the religion {tail}"],
    "/per/misc/nationality": ["{tail} is the nationality of {head}", "{head} is a citizen of {tail}"],
    "/misc/misc/part_of": ["{head} is part of {tail}", "{tail} includes {head}"],
    "/misc/loc/held_on": ["{head} is held in {tail}", "{tail} is where {head} takes place"],
}
# Where exchanging head and tail keeps the relation: no swapped negative for these.
SYMMETRIC = {"/per/per/siblings", "/per/per/couple", "/per/per/neighbor", "/per/per/peer", "/per/per/alumi"}


def wikidata_definition(text: str) -> str:
    """A Wikidata property's description as one naming the pair: its first clause, notes in brackets dropped."""
    text = re.split(r" [\[(]|; |\. |, e\.g|, opposite|\.$", text)[0]  # notes follow in brackets
    text = re.sub(r"\([^()]*\)", "", text)  # "creator(s)"
    text = re.sub(r"\b(the )?subject's\b", "{head}'s", text)
    text = re.sub(r"\b(the )?subject\b", "{head}", text)
    text = re.sub(r"\b(the )?object\b", "{tail}", text).strip()
    if text.startswith("{head}") and "{tail}" in text:  # "{head} has {tail} as ... child"
        return text
    # Most describe the value, the tail: "person or organization for which {head} works"
    return f"{{tail}} is {text}" if text.startswith("{head}'s") else f"{{tail}} is the {text}"


def relation_sets(
    zeroshot_dir: Path, mnre_dir: Path | None, definitions: bool = False
) -> dict[str, tuple[list[dict], dict[str, list[str]]]]:
    """
    Each training set's rows and its relations' descriptions naming the pair; with `definitions`, NYT's
    also read as Wikidata defines the property (`pid2name_nyt.json`).
    """
    labels = json.loads((zeroshot_dir / "pid2name_nyt.json").read_text())
    described = {
        "nyt": lambda pid: [
            f"{{tail}} is the {labels[pid][0]} of {{head}}",
            f"{{head}} has {labels[pid][0]} {{tail}}",
            *([wikidata_definition(labels[pid][1])] if definitions else []),
        ],
        "pubmed": lambda name: [
            f"{{head}} {name.replace('_', ' ')} {{tail}}",
            f"{{head}} is {name.replace('_', ' ')} {{tail}}",
        ],
    }
    sets = {}
    for name, file in (("nyt", "val_nyt.json"), ("pubmed", "val_pubmed.json")):
        dataset = load_fewrel(zeroshot_dir / file)
        names = dataset.features["relation"].names
        sets[name] = (
            [text_row(r, names[r["relation"]], name) for r in dataset],
            {n: described[name](n) for n in names},
        )
    if mnre_dir is not None:
        train = load_mnre(mnre_dir)["train"]
        names = train.features["relation"].names
        rows = [text_row(r, names[r["relation"]], "mnre") for r in train if names[r["relation"]] != "None"]
        sets["mnre"] = (rows, dict(MNRE_FILLED))
    return sets


def split_sets(sets: dict, mnre_rows: int, hold_out: list[int], rng: random.Random) -> tuple:
    """
    The training rows (shuffled) and each set's trained relations, and the rows and descriptions of the
    relations held out of NYT and PubMed (`hold_out` of each, drawn with `rng`), with the names held out.
    MNRE's rows in `sets` are first cut to `mnre_rows` of them, drawn with `rng`.
    """
    if "mnre" in sets:
        rows, relations = sets["mnre"]
        sets["mnre"] = (rng.sample(rows, min(mnre_rows, len(rows))), relations)
    held = {name: rng.sample(sorted(sets[name][1]), count) for name, count in zip(("nyt", "pubmed"), hold_out)}
    train, trained_relations, held_rows, held_relations = [], {}, [], {}
    for name, (rows, relations) in sets.items():
        trained_relations[name] = {r: d for r, d in relations.items() if r not in held.get(name, ())}
        held_relations |= {r: d for r, d in relations.items() if r in held.get(name, ())}
        for row in rows:
            (held_rows if row["relation"] in held.get(name, ()) else train).append(row)
    rng.shuffle(train)
    return train, trained_relations, (held_rows, held_relations), held


def semeval_task(zeroshot_dir: Path) -> tuple[list[dict], dict[str, list[str]]]:
    """`new_relations.py`'s fixed sample of SemEval's sentences, and the 17 relations' descriptions."""
    sample = semeval_sample(zeroshot_dir / "val_semeval.json", 40, 0)
    return sample, semeval_relations(sorted({row["relation"] for row in sample}))


class Retriever(torch.nn.Module):
    """One encoder for sentences and descriptions, mean-pooled; similarity is the cosine times a learned scale."""

    def __init__(self, temperature: float):
        super().__init__()
        folder = embedded_text_backbone()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = AutoModel.from_pretrained(folder)
        self.log_scale = torch.nn.Parameter(torch.tensor(1 / temperature).log())

    def embed(self, texts: list[str], max_length: int) -> torch.Tensor:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        states = self.encoder(**encoded).last_hidden_state  # (texts, length, hidden)
        return F.normalize(masked_mean(states, encoded["attention_mask"]), dim=-1)

    def descriptions(self, texts: list[str]) -> torch.Tensor:
        """Each text's embedding, every distinct text encoded once."""
        distinct = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(distinct)}
        return self.embed(distinct, 48)[[position[text] for text in texts]]


def entities(row: dict) -> tuple[str, str]:
    return row["text"][slice(*row["head"])], row["text"][slice(*row["tail"])]


@torch.no_grad()
def predict(model: Retriever, rows: list[dict], relations: dict[str, list[str]], batch_size: int = 32) -> list[str]:
    """Each row's relation: the one whose filled paraphrases' mean direction is closest to the sentence."""
    model.eval()
    names, predictions = list(relations), []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        sentences = model.embed([row["text"] for row in chunk], 128)  # (batch, hidden)
        texts = [fill_description(p, *entities(row)) for row in chunk for name in names for p in relations[name]]
        owner = torch.tensor(
            [i * len(names) + j for i in range(len(chunk)) for j, name in enumerate(names) for _ in relations[name]]
        )
        summed = torch.zeros(len(chunk) * len(names), sentences.shape[-1]).index_add_(
            0, owner, model.descriptions(texts)
        )
        directions = F.normalize(summed, dim=-1).view(len(chunk), len(names), -1)  # (batch, relations, hidden)
        predictions += [names[k] for k in torch.einsum("bh,brh->br", sentences, directions).argmax(-1).tolist()]
    return predictions


def evaluate(model: Retriever, held_out: tuple[list[dict], dict], semeval: tuple[list[dict], dict]) -> dict:
    rows, relations = held_out
    predicted = predict(model, rows, relations)
    results = {"held_out_accuracy": sum(p == r["relation"] for p, r in zip(predicted, rows)) / len(rows)}
    rows, relations = semeval
    if rows:
        predicted, references = predict(model, rows, relations), [row["relation"] for row in rows]
        results |= {
            "semeval_accuracy": sum(p == r for p, r in zip(predicted, references)) / len(rows),
            "semeval_macro_f1": macro_f1(predicted, references, list(relations)),
            "semeval_accuracy_undirected": sum(p[:-7] == r[:-7] for p, r in zip(predicted, references)) / len(rows),
        }
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zeroshot_dir", type=Path, required=True, help="FewRel 2.0's NYT, PubMed and SemEval files.")
    parser.add_argument(
        "--mnre_dir", type=Path, default=None, help="MNRE's folder: its train rows (not None) join training."
    )
    parser.add_argument(
        "--mnre_rows", type=int, default=2000, help="MNRE train rows drawn (with the seed) for training."
    )
    parser.add_argument(
        "--hold_out",
        type=int,
        nargs=2,
        default=[5, 2],
        metavar=("NYT", "PUBMED"),
        help="Relations held out of each set.",
    )
    parser.add_argument(
        "--negatives", type=int, default=3, help="Other relations of its set each example is contrasted with."
    )
    parser.add_argument(
        "--swap_negatives", action="store_true", help="Also its own relation with head and tail exchanged."
    )
    parser.add_argument(
        "--wikidata_definitions",
        action="store_true",
        help="NYT's relations also described by Wikidata's definition of the property.",
    )
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip_untrained", action="store_true", help="Evaluate after training only.")
    parser.add_argument("--output_json", type=str, default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    sets = relation_sets(args.zeroshot_dir, args.mnre_dir, args.wikidata_definitions)
    train, trained_relations, (held_rows, held_relations), held = split_sets(sets, args.mnre_rows, args.hold_out, rng)
    semeval = semeval_task(args.zeroshot_dir)

    model = Retriever(args.temperature)
    summary = provenance() | {
        "kind": "relation_retrieval",
        "seed": args.seed,
        "arguments": {k: str(v) for k, v in vars(args).items()},
    }
    summary |= {
        "held_out_relations": held,
        "training_rows": {name: sum(r["set"] == name for r in train) for name in sets},
    }
    if not args.skip_untrained:
        summary["untrained"] = evaluate(model, (held_rows, held_relations), semeval)
        print("untrained", summary["untrained"], flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    warmup = max(1, args.max_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1, (step + 1) / warmup) * (args.max_steps - step) / args.max_steps
    )
    model.train()
    started, losses = time.time(), []
    for step in range(args.max_steps):
        start = step * args.batch_size % len(train)
        chunk = train[start : start + args.batch_size]
        descriptions, targets = [], []
        for row in chunk:
            head, tail = entities(row)
            described = trained_relations[row["set"]]
            others = rng.sample([r for r in described if r != row["relation"]], args.negatives)
            candidates = [row["relation"], *others]
            rng.shuffle(candidates)
            targets.append(candidates.index(row["relation"]))
            descriptions += [fill_description(rng.choice(described[r]), head, tail) for r in candidates]
            if args.swap_negatives:
                # Its own relation read the other way (for a symmetric one, one more other relation instead).
                swapped = row["relation"] not in SYMMETRIC
                relation = row["relation"] if swapped else rng.choice([r for r in described if r not in candidates])
                descriptions.append(
                    fill_description(rng.choice(described[relation]), *((tail, head) if swapped else (head, tail)))
                )
        sentences = model.embed([row["text"] for row in chunk], 128)  # (batch, hidden)
        candidates = model.descriptions(descriptions).view(
            len(chunk), -1, sentences.shape[-1]
        )  # (batch, candidates, hidden)
        logits = torch.einsum("bh,bch->bc", sentences, candidates) * model.log_scale.exp().clamp(max=100)
        loss = F.cross_entropy(logits, torch.tensor(targets))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(), schedule.step(), optimizer.zero_grad()
        losses.append(loss.item())
        if step % 20 == 0:
            print(f"step {step}/{args.max_steps} loss {loss.item():.3f} {time.time() - started:.0f}s", flush=True)
    summary["losses"] = losses
    summary["training_seconds"] = time.time() - started
    summary["trained"] = evaluate(model, (held_rows, held_relations), semeval)
    print("trained", summary["trained"], flush=True)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
