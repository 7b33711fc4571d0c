#!/usr/bin/env python
"""
Relations a trained ROC model never learned, added by their descriptions, as a new user would add them:
load the folder with `AutoModel` (remote code), `set_relations` with the trained relations plus new
ones, save it with its processor, load the pipeline from the saved folder, and ask for the relation of
sentences written to express each case. Prints the rank of the intended relation among all of them.

    python benchmarks/new_relations.py outputs/accuracy/roc-seed42
    python benchmarks/new_relations.py outputs/accuracy/roc-heldout-seed42 --data_dir ../shared/data/mnre \
        --relations /per/per/peer /per/org/member_of --margins 0 0.05 0.1 0.15 0.2 0.25 0.3

With `--zeroshot`, it adds the 17 relations of SemEval-2010 Task 8 (as FewRel 2.0 redistributes them,
`../shared/data/zeroshot/val_semeval.json`) for the call, described from the task's published relation
definitions (Hendrickx et al., 2010) and never from its sentences, and ranks them on a fixed sample of
the task's sentences (`--per_relation` each, drawn with `--seed`): accuracy and macro-F1 among the 17
(chance 1 / 17), against the same frozen text encoder comparing each whole sentence with each
description filled with the pair's entities, trained on nothing; and, for the 8 relations given in both
directions, how often swapping head and tail moves the prediction to the other direction. Only the
17 compete (no `None`, no trained relation), so no margin or threshold is involved.

    python benchmarks/new_relations.py outputs/roc-mnre --zeroshot ../shared/data/zeroshot/val_semeval.json

With `--data_dir`, it also ranks the relations of every validation example of `--relations` (text, no
image on this machine): how often the intended relation comes first among all relations, and among all
but `None`, the zero-shot setting where a pair is known to be related (chance: 1 / their number). With
`--margins`, it predicts the whole validation split with each `trained_relation_margin` (the cosine taken
from every relation that training saw) and reports micro-F1 with the held-out relations' precision and
recall: the calibration of the config's margin. For a folder trained with `--validation_from_train`,
"validation" is the same rows of train its training selected on, and the margin with the best micro-F1
there is then evaluated once on the data's validation split (`chosen_margin`, `reported`).

The new relations are four that MNRE's label set lacks and `/per/per/rival`, which it lacks by name
but annotates as `/per/per/peer` ("Daniel Bryan beats AJ Styles" is peer in MNRE train): a model that
puts rivals under peer follows its training data. They are added together, so each also competes with
the other new ones. MNRE's two most frequent relations are the cases of
`benchmarks/accuracy.py --hold_out /per/per/peer /per/org/member_of`, which removes them from
training (their descriptions stay those of the config); on a model trained with them they are not new.
"""

import argparse
import json
import random
import statistics
import tempfile

import torch
from common import batches, provenance, training_info  # benchmarks/common.py
from torch.nn import functional as F
from transformers import AutoModel, AutoProcessor, pipeline

from modeling_mre import carve_validation_from_train, compute_mre_metrics, load_fewrel, load_mnre
from modeling_mre.models.layers_mre import masked_mean
from modeling_mre.models.modeling_roc import cosines, mean_directions
from modeling_mre.models.processing_mre import _tokens_to_text, fill_description


NEW_RELATIONS = {
    "/per/loc/place_of_death": [
        "the person died in the place",
        "the place is where the person died",
        "the person passed away in the location",
    ],
    "/per/misc/author_of": [
        "the person wrote, composed or created the work",
        "the second entity is a book, song or film by the first person",
        "the first person is the author of the second entity",
    ],
    "/per/org/founder_of": [
        "the person founded the organization",
        "the first person created or started the company or group named second",
        "the organization was founded by the person",
    ],
    "/org/misc/product": [
        "the organization makes or sells the product",
        "the second entity is a product of the first organization",
        "the company released or launched the product",
    ],
    "/per/per/rival": [
        "the two people compete against each other",
        "the first person is a rival or opponent of the second person",
        "one person beat or lost to the other in a match or an election",
    ],
}
# SemEval-2010 Task 8's relations, written from the task's definitions (Hendrickx et al., 2010, "SemEval-2010
# Task 8: Multi-Way Classification of Semantic Relations between Pairs of Nominals", Table 1), never from its
# sentences; `(e1,e2)` reads the head as the definition's first argument. The processor fills {head} and
# {tail} with the pair's entities, so that the two directions of a relation differ.
SEMEVAL_DEFINITIONS = {
    "Cause-Effect": [
        "{head} causes {tail}",
        "{tail} is an effect of {head}",
        "{head} is an event or object that leads to {tail}",
    ],
    "Instrument-Agency": [
        "{head} is an instrument used by {tail}",
        "{tail} uses {head}",
        "{tail} is an agent that uses {head}",
    ],
    "Product-Producer": [
        "{head} is a product of {tail}",
        "{tail} produces {head}",
        "{tail} is a producer that causes {head} to exist",
    ],
    "Content-Container": [
        "{head} is in the container {tail}",
        "{tail} contains {head}",
        "{head} is physically stored in the space of {tail}",
    ],
    "Entity-Origin": [
        "{head} comes from {tail}",
        "{tail} is the origin of {head}",
        "{head} is derived from the position or material {tail}",
    ],
    "Entity-Destination": [
        "{head} moves towards {tail}",
        "{tail} is the destination of {head}",
        "{head} is moving towards {tail}",
    ],
    "Component-Whole": [
        "{head} is a component of {tail}",
        "{tail} is a whole that has {head} as a part",
        "{head} is a part of the larger whole {tail}",
    ],
    "Member-Collection": [
        "{head} is a member of {tail}",
        "{tail} is a collection that includes {head}",
        "{head} forms a nonfunctional part of the collection {tail}",
    ],
    "Message-Topic": [
        "{head} is a message about {tail}",
        "{tail} is the topic of {head}",
        "{head}, written or spoken, is about {tail}",
    ],
}


def semeval_relations(relations_in_data) -> dict[str, list[str]]:
    """Each of the data's relations (`Cause-Effect(e2,e1)`, ...) with its definitions, in that direction."""
    swap = {"{head}": "{tail}", "{tail}": "{head}"}
    described = {}
    for relation in relations_in_data:
        base, direction = relation[:-7], relation[-7:]
        paraphrases = SEMEVAL_DEFINITIONS[base]
        if direction == "(e2,e1)":
            paraphrases = [
                " ".join(swap.get(word, word) for word in p.replace(",", " ,").split()).replace(" ,", ",")
                for p in paraphrases
            ]
        described[relation] = paraphrases
    return described


# Sentences in MNRE's register (news and sports tweets), written for this check: (text, head, tail).
CASES = {
    "/per/loc/place_of_death": [
        ("Stephen Hawking dies in Cambridge at 76", "Stephen Hawking", "Cambridge"),
        ("Prince found dead at his Paisley Park home in Minnesota", "Prince", "Minnesota"),
        ("Whitney Houston passed away in Beverly Hills in 2012", "Whitney Houston", "Beverly Hills"),
        ("Anthony Bourdain died in Strasbourg while filming his show", "Anthony Bourdain", "Strasbourg"),
        ("Avicii died in Muscat , Oman , at 28", "Avicii", "Muscat"),
    ],
    "/per/misc/author_of": [
        ("Stephen King 's new novel The Institute hits shelves today", "Stephen King", "The Institute"),
        ("Taylor Swift wrote Shake It Off in one afternoon", "Taylor Swift", "Shake It Off"),
        ("Christopher Nolan 's Dunkirk is the best film of the year", "Christopher Nolan", "Dunkirk"),
        (
            "J.K. Rowling reads from Harry Potter and the Cursed Child",
            "J.K. Rowling",
            "Harry Potter and the Cursed Child",
        ),
        ("Paulo Coelho signs copies of The Alchemist in Rio", "Paulo Coelho", "The Alchemist"),
    ],
    "/per/org/founder_of": [
        ("Elon Musk founded SpaceX in 2002", "Elon Musk", "SpaceX"),
        ("Mark Zuckerberg started Facebook in his Harvard dorm", "Mark Zuckerberg", "Facebook"),
        ("Jeff Bezos launched Amazon from his garage", "Jeff Bezos", "Amazon"),
        ("Bill Gates co-founded Microsoft with Paul Allen", "Bill Gates", "Microsoft"),
        ("Phil Knight , who created Nike , steps down", "Phil Knight", "Nike"),
    ],
    "/org/misc/product": [
        ("Apple unveils the iPhone X at its Cupertino event", "Apple", "iPhone X"),
        ("Tesla starts deliveries of the Model 3", "Tesla", "Model 3"),
        ("Nintendo sells 10 million Switch consoles", "Nintendo", "Switch"),
        ("Samsung recalls the Galaxy Note 7", "Samsung", "Galaxy Note 7"),
        ("Microsoft releases Windows 10 update", "Microsoft", "Windows 10"),
    ],
    "/per/per/rival": [
        ("Federer beats Nadal again in the Wimbledon final", "Federer", "Nadal"),
        ("Ali knocks out Frazier in the fight of the century", "Ali", "Frazier"),
        ("Trump and Clinton clash in the second presidential debate", "Trump", "Clinton"),
        ("Serena Williams defeats Sharapova for the 18th straight time", "Serena Williams", "Sharapova"),
        ("Carlsen holds off Caruana to keep his world chess title", "Carlsen", "Caruana"),
    ],
    "/per/per/peer": [
        ("Kevin Durant and Stephen Curry warm up before tonight 's game", "Kevin Durant", "Stephen Curry"),
        ("Paul McCartney on stage with Ringo Starr at the Beatles reunion", "Paul McCartney", "Ringo Starr"),
        ("Messi celebrates with Suarez after the second goal", "Messi", "Suarez"),
        ("Obama and Biden share a laugh at the White House", "Obama", "Biden"),
        ("Jagger and Keith Richards rehearse for the Stones tour", "Jagger", "Keith Richards"),
    ],
    "/per/org/member_of": [
        ("LeBron James leads the Lakers to another win", "LeBron James", "Lakers"),
        ("Harry Styles on the One Direction reunion rumours", "Harry Styles", "One Direction"),
        ("Ronaldo scores twice for Juventus on Sunday", "Ronaldo", "Juventus"),
        ("Nancy Pelosi speaks for the Democrats at the press conference", "Nancy Pelosi", "Democrats"),
        ("Tom Brady signs a new two-year deal with the Patriots", "Tom Brady", "Patriots"),
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="A folder of a trained ROC model (train_accelerate.py --method roc).")
    parser.add_argument(
        "--data_dir", default=None, help="An MNRE folder: also rank its validation examples of --relations."
    )
    parser.add_argument(
        "--relations", nargs="+", default=[], help="The relations whose validation examples are ranked."
    )
    parser.add_argument(
        "--margins",
        nargs="+",
        type=float,
        default=[],
        help="With --data_dir: the trained_relation_margin values to sweep.",
    )
    parser.add_argument(
        "--margin", type=float, default=None, help="The margin of the new-relation check (default: the folder's)."
    )
    parser.add_argument("--output_json", default=None, help="Also write the ranks here.")
    parser.add_argument(
        "--zeroshot", default=None, help="FewRel's val_semeval.json: rank SemEval-2010 Task 8's relations."
    )
    parser.add_argument("--per_relation", type=int, default=40, help="With --zeroshot: sentences drawn per relation.")
    parser.add_argument("--seed", type=int, default=0, help="With --zeroshot: the seed of the drawn sentences.")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    if not hasattr(model, "set_relations"):
        raise SystemExit(
            f"{args.model} holds a {type(model).__name__}: relations are added to a retrieval model (ROC)"
        )
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    summary = {"model": args.model, **provenance(), "training": training_info(args.model)}
    if args.data_dir:  # among the relations the folder was trained with, before any is added
        dataset = load_mnre(args.data_dir)
        carved = summary["training"]["validation_from_train"]
        if carved:  # the split the folder selected on, carved from train as its training carved it
            dataset = carve_validation_from_train(dataset, carved, summary["training"]["seed"])
        validation = dataset["validation"]
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        summary["validation"] = rank_validation(model, processor, validation, args.relations)
        if args.margins:
            summary["margins"] = margin_sweep(model, processor, validation, args.relations, args.margins)
            if carved:  # chosen on rows of train, reported once on the split nothing was chosen on
                summary["chosen_margin"] = max(summary["margins"], key=lambda row: row["micro_f1"])["margin"]
                print(
                    f"\nmargin {summary['chosen_margin']:g}, chosen on {len(validation)} rows of train, on {args.data_dir}'s validation:"
                )
                summary["reported"] = margin_sweep(
                    model, processor, dataset["test"], args.relations, [summary["chosen_margin"]]
                )[0]
        model.to("cpu")
    if args.zeroshot:
        summary["zeroshot"] = zero_shot(args.model, model, processor, args.zeroshot, args.per_relation, args.seed)
    if args.margin is not None:
        model.config.trained_relation_margin = args.margin
    trained = dict.fromkeys(model.config.relation_descriptions)  # None: each keeps its own descriptions
    model.set_relations({**trained, **NEW_RELATIONS})
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        extract = pipeline("multimodal-relation-extraction", model=folder, trust_remote_code=True)
        relations = extract.model.config.num_labels
        inputs = [{"text": t, "head": h, "tail": o} for cases in CASES.values() for t, h, o in cases]
        ranked = extract(inputs, top_k=relations, batch_size=len(inputs))

    print(f"\n{args.model}: {relations} relations, trained_relation_margin {model.config.trained_relation_margin}")
    print(f"(chance: rank {(relations + 1) / 2:.1f} on average, first 1 in {relations})\n")
    print("| intended relation | sentence | rank | top relation |")
    print("|---|---|---|---|")
    results, rows = {}, iter(ranked)
    for relation, cases in CASES.items():
        ranks = []
        for (text, _, _), row in zip(cases, rows):
            names = [r["relation"] for r in row]
            ranks.append(names.index(relation) + 1)
            print(f"| {relation} | {text} | {ranks[-1]} | {names[0]} ({row[0]['score']:.2f}) |")
        results[relation] = ranks
    print("\n| intended relation | ranked first | mean rank |")
    print("|---|---|---|")
    for relation, ranks in results.items():
        print(f"| {relation} | {sum(r == 1 for r in ranks)} / {len(ranks)} | {statistics.mean(ranks):.1f} |")
    summary |= {"num_relations": relations, "margin": model.config.trained_relation_margin, "ranks": results}
    if args.output_json:
        with open(args.output_json, "w") as file:
            json.dump(summary, file, indent=2)


def semeval_sample(path: str, per_relation: int, seed: int) -> list[dict]:
    """`per_relation` instances of each relation, drawn with `seed`: text, head and tail offsets, relation."""
    dataset = load_fewrel(path, "validation")
    names = dataset.features["relation"].names
    by_relation = {name: [] for name in names}
    for record in dataset:
        by_relation[names[record["relation"]]].append(record)
    rng, sample = random.Random(seed), []
    for relation in sorted(by_relation):
        records = by_relation[relation]
        sample += [text_row(r, relation, "semeval") for r in rng.sample(records, min(per_relation, len(records)))]
    return sample


def text_row(record: dict, relation: str, relation_set: str) -> dict:
    """A record-schema row as text with the head's and tail's character spans."""
    text, spans = _tokens_to_text(record["tokens"], {"head": record["head"], "tail": record["tail"]})
    return {"text": text, **spans, "relation": relation, "set": relation_set}


def macro_f1(predictions: list[str], references: list[str], relations: list[str]) -> float:
    scores = []
    for relation in relations:
        tp = sum(p == r == relation for p, r in zip(predictions, references))
        predicted, actual = predictions.count(relation), references.count(relation)
        scores.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
    return statistics.mean(scores)


def inverse(relation: str) -> str | None:
    if relation.endswith("(e1,e2)"):
        return relation[:-7] + "(e2,e1)"
    return relation[:-7] + "(e1,e2)" if relation.endswith("(e2,e1)") else None


def zero_shot(folder: str, model, processor, path: str, per_relation: int, seed: int) -> dict:
    """SemEval's relations added for the call to the folder's model, and the untrained backbone's similarity."""
    sample = semeval_sample(path, per_relation, seed)
    relations = semeval_relations(sorted({row["relation"] for row in sample}))
    names = list(relations)
    swapped = [{**row, "head": row["tail"], "tail": row["head"]} for row in sample]
    settings = (("given", sample), ("swapped", swapped))
    extract = pipeline("multimodal-relation-extraction", model=folder, trust_remote_code=True)
    model_predictions = {}
    for setting, rows in settings:
        inputs = [{key: row[key] for key in ("text", "head", "tail")} for row in rows]
        ranked = extract(inputs, candidate_relations=relations, top_k=1, batch_size=64)
        model_predictions[setting] = [r[0]["relation"] for r in ranked]
    backbone_predictions = {
        setting: backbone_similarity(model, processor, rows, relations) for setting, rows in settings
    }
    # The descriptions with role words in the entities' places: the same text for every pair, as a
    # sentence-to-description similarity that knows nothing of the pair compares them.
    unnamed = {
        name: [fill_description(p, "the first entity", "the second entity") for p in paraphrases]
        for name, paraphrases in relations.items()
    }
    unnamed_predictions = {setting: backbone_similarity(model, processor, rows, unnamed) for setting, rows in settings}
    references = [row["relation"] for row in sample]
    two_way = [i for i, r in enumerate(references) if inverse(r) in relations]
    results = {
        "sentences": len(sample),
        "relations": len(names),
        "chance": 1 / len(names),
        "seed": seed,
        "per_relation": per_relation,
    }
    print(f"\nSemEval-2010 Task 8, {len(sample)} sentences, {len(names)} relations (chance {100 / len(names):.1f}%)\n")
    print("| model | accuracy | macro-F1 | swapped pair to the other direction | of those right before the swap |")
    print("|---|---|---|---|---|")
    compared = (
        ("roc", "ROC (the folder)", model_predictions),
        ("backbone", "untrained backbone, descriptions naming the pair", backbone_predictions),
        ("backbone_unnamed", "untrained backbone, descriptions with role words", unnamed_predictions),
    )
    for key, label, predictions in compared:
        given, moved = predictions["given"], predictions["swapped"]
        right = [i for i in two_way if given[i] == references[i]]
        row = {
            "accuracy": sum(p == r for p, r in zip(given, references)) / len(references),
            "macro_f1": macro_f1(given, references, names),
            "swap_to_inverse": sum(moved[i] == inverse(references[i]) for i in two_way) / len(two_way),
            "swap_to_inverse_when_right": sum(moved[i] == inverse(references[i]) for i in right) / max(len(right), 1),
            "predictions": given,
            "swapped_predictions": moved,
        }
        results[key] = row
        print(
            f"| {label} | {100 * row['accuracy']:.1f}% | {100 * row['macro_f1']:.1f} | {100 * row['swap_to_inverse']:.1f}% "
            f"| {100 * row['swap_to_inverse_when_right']:.1f}% ({len(right)}) |"
        )
    results["references"] = references
    return results


@torch.no_grad()
def backbone_similarity(model, processor, rows: list[dict], relations: dict[str, list[str]]) -> list[str]:
    """
    The frozen encoder that reads ROC's descriptions, trained on nothing: each whole sentence (no markers)
    against each relation's descriptions (filled with the pair's entities where they name it), mean-pooled,
    by cosine.
    """
    encoder = model.description_encoder.eval()
    device = next(encoder.parameters()).device
    names, predictions = list(relations), []

    def embed(input_ids, attention_mask):
        attention_mask = attention_mask.to(device)
        states = encoder(input_ids=input_ids.to(device), attention_mask=attention_mask).last_hidden_state
        return F.normalize(masked_mean(states, attention_mask), dim=-1)

    for start in range(0, len(rows), 32):
        chunk = rows[start : start + 32]
        encoded = processor.tokenizer(
            [row["text"] for row in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        sentences = embed(encoded["input_ids"], encoded["attention_mask"])  # (batch, hidden)
        # Descriptions that do not name the pair are the same for every row: encoded once per chunk.
        described = processor.encode_relations(
            relations, [(row["text"][slice(*row["head"])], row["text"][slice(*row["tail"])]) for row in chunk]
        )
        shape = described["relation_input_ids"].shape[:-1]
        embeddings = embed(
            described["relation_input_ids"].flatten(0, -2), described["relation_attention_mask"].flatten(0, -2)
        )
        directions = mean_directions(embeddings.view(*shape, -1), described["relation_index"].to(device), len(names))
        best = cosines(sentences, directions).argmax(-1)
        predictions += [names[i] for i in best.tolist()]
    return predictions


@torch.no_grad()
def rank_validation(model, processor, validation, relations: list[str]) -> dict:
    """Recall at rank 1 of each relation's validation examples, among all relations and among all but None."""
    names = validation.features["relation"].names
    print("\n| relation | examples | first among all | first among all but None | chance without None |")
    print("|---|---|---|---|---|")
    candidates = [name for name in model.config.relation_descriptions if name != "None"]
    found = {}
    for relation in relations:
        label = names.index(relation)
        rows = validation.filter(lambda r, label=label: r == label, input_columns="relation")
        firsts = {"all": 0, "without None": 0}
        for setting, among in (("all", None), ("without None", candidates)):
            described = {name: model.config.relation_descriptions[name] for name in among} if among else None
            names = among or [model.config.id2label[i] for i in range(model.config.num_labels)]
            for inputs in batches(processor, rows, model.device, relations=described):
                best = model(**inputs).logits.argmax(-1)
                firsts[setting] += int((best == names.index(relation)).sum())
        found[relation] = {setting: count / len(rows) for setting, count in firsts.items()} | {"examples": len(rows)}
        print(
            f"| {relation} | {len(rows)} | {100 * found[relation]['all']:.1f}% | "
            f"{100 * found[relation]['without None']:.1f}% | {100 / len(candidates):.1f}% |"
        )
    return found


@torch.no_grad()
def margin_sweep(model, processor, validation, relations: list[str], margins: list[float]) -> list[dict]:
    """Micro-F1 of the whole validation split and each of `relations`' precision and recall, for each margin."""
    names = validation.features["relation"].names
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    references = [label_names.index(names[relation]) for relation in validation["relation"]]
    inputs = list(batches(processor, validation, model.device))
    print(f"\n| margin | micro-F1 | {' | '.join(f'{r}: P / R' for r in relations)} |")
    print(f"|---|---|{'---|' * len(relations)}")
    saved, sweep = model.config.trained_relation_margin, []
    for margin in margins:
        model.config.trained_relation_margin = margin
        predictions = torch.cat([model(**batch).logits.argmax(-1).cpu() for batch in inputs])
        metrics = compute_mre_metrics(predictions, references, label_names)
        found = {r: {k: metrics["per_relation"][r][k] for k in ("precision", "recall")} for r in relations}
        sweep.append({"margin": margin, "micro_f1": metrics["micro_f1"], "relations": found})
        cells = " | ".join(f"{100 * f['precision']:.1f} / {100 * f['recall']:.1f}" for f in found.values())
        print(f"| {margin:g} | {100 * metrics['micro_f1']:.2f} | {cells} |")
    model.config.trained_relation_margin = saved
    return sweep


if __name__ == "__main__":
    main()
