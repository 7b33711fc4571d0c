"""Selection splits carved from train, for datasets whose only other split is the one results are reported on."""

from datasets import DatasetDict


def carve_validation_from_train(dataset: DatasetDict, fraction: float, seed: int) -> DatasetDict:
    """
    `train` minus a `fraction` of its rows (drawn with `seed`, stratified by relation) becomes the new
    `train`, those rows the new `validation`, and the old `validation` becomes `test`: what is chosen
    (the best epoch, a margin) is chosen on rows of train, and the dataset's validation split is
    evaluated once, as a test split is. The same arguments give the same rows.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the share of train carved out as validation must lie in (0, 1), got {fraction}")
    if "test" in dataset:
        raise ValueError("the dataset has a test split: select on its validation split and report on test")
    if "validation" not in dataset:
        raise ValueError(f"the dataset has no validation split to report on (its splits: {', '.join(dataset)})")
    # The generator is rebuilt from `seed` on every call: the same rows whatever ran before.
    carved = dataset["train"].train_test_split(test_size=fraction, seed=seed, stratify_by_column="relation")
    return DatasetDict(train=carved["train"], validation=carved["test"], test=dataset["validation"])
