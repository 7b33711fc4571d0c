#!/usr/bin/env python
"""
Relations a trained ROC model never learned, added by their descriptions, as a new user would add them:
load the folder with `AutoModel` (remote code), `set_relations` with the trained relations plus a new
one, save it with its processor, load the pipeline from the saved folder, and ask for the relation of sentences written to
express each case. Prints the rank of the intended relation among all of them for every sentence.

    python benchmarks/new_relations.py outputs/accuracy/roc-heldout-seed42
    python benchmarks/new_relations.py outputs/accuracy/roc-heldout-seed42 --data_dir ../shared/data/mnre \
        --relations /per/per/peer /per/org/member_of

With `--data_dir`, it also ranks the relations of every validation example of `--relations` (text, no
image on this machine): how often the intended relation comes first among all relations, and among all
but `None`, the zero-shot setting where a pair is known to be related (chance: 1 / their number).

The cases are a relation absent from MNRE's label set (`/per/per/rival`) and MNRE's two most frequent
relations, which `benchmarks/accuracy.py --hold_out /per/per/peer /per/org/member_of` removes from
training (their descriptions stay those of the config); on a model trained with them, the latter two
are not new.
"""

import argparse
import contextlib
import json
import statistics
import tempfile

import torch
from transformers import AutoModel, AutoProcessor, pipeline

from modeling_mre import load_mnre


NEW_RELATIONS = {
    "/per/per/rival": [
        "the two people compete against each other",
        "the first person is a rival or opponent of the second person",
        "one person beat or lost to the other in a match or an election",
    ],
}
# Sentences in MNRE's register (news and sports tweets), written for this check: (text, head, tail).
CASES = {
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
    parser.add_argument("--data_dir", default=None, help="An MNRE folder: also rank its validation examples of --relations.")
    parser.add_argument("--relations", nargs="+", default=[], help="The relations whose validation examples are ranked.")
    parser.add_argument("--output_json", default=None, help="Also write the ranks here.")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
    if not hasattr(model, "set_relations"):
        raise SystemExit(f"{args.model} holds a {type(model).__name__}: relations are added to a retrieval model (ROC)")
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    summary = {"model": args.model}
    if args.data_dir:  # among the relations the folder was trained with, before any is added
        summary["validation"] = rank_validation(model, processor, args)
    trained = dict.fromkeys(model.config.relation_descriptions)  # None: each keeps its own descriptions
    model.set_relations({**trained, **NEW_RELATIONS})
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        extract = pipeline("multimodal-relation-extraction", model=folder, trust_remote_code=True)
        relations = extract.model.config.num_labels
        inputs = [{"text": t, "head": h, "tail": o} for cases in CASES.values() for t, h, o in cases]
        ranked = extract(inputs, top_k=relations, batch_size=len(inputs))

    print(f"{args.model}: {relations} relations (chance: rank {(relations + 1) / 2:.1f} on average, first 1 in {relations})\n")
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
    summary |= {"num_relations": relations, "ranks": results}
    if args.output_json:
        with open(args.output_json, "w") as file:
            json.dump(summary, file, indent=2)


@torch.no_grad()
def rank_validation(model, processor, args) -> dict:
    """Recall at rank 1 of each relation's validation examples, among all relations and among all but None."""
    validation = load_mnre(args.data_dir)["validation"]
    names = validation.features["relation"].names
    print("\n| relation | examples | first among all | first among all but None | chance without None |")
    print("|---|---|---|---|---|")
    candidates = [name for name in model.config.relation_descriptions if name != "None"]
    found = {}
    for relation in args.relations:
        rows = validation.filter(lambda r: r == names.index(relation), input_columns="relation")
        firsts = {"all": 0, "without None": 0}
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64]
            inputs = processor(tokens=batch["tokens"], head=batch["head"], tail=batch["tail"], images=batch["image"])
            for setting, relations in (("all", None), ("without None", candidates)):
                with model.candidate_relations(relations) if relations else contextlib.nullcontext():
                    best = model(**inputs).logits.argmax(-1)
                    firsts[setting] += int((best == model.config.label2id[relation]).sum())
        found[relation] = {setting: count / len(rows) for setting, count in firsts.items()} | {"examples": len(rows)}
        print(
            f"| {relation} | {len(rows)} | {100 * found[relation]['all']:.1f}% | "
            f"{100 * found[relation]['without None']:.1f}% | {100 / len(candidates):.1f}% |"
        )
    return found


if __name__ == "__main__":
    main()
