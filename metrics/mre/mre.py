"""
The metric of the MNRE peers (HVPNeT, MKGformer, MMIB: OpenNRE's `eval_result`) as an `evaluate` module:
accuracy over all instances, micro precision, recall and F1 over the relations other than the negative
one, a per-relation report and the confusion matrix. It is `modeling_mre.compute_mre_metrics` itself:
`mre_metrics.py` beside this file is a copy of `modeling_mre/metrics.py` (a real file, so the folder
deploys as it is; tests/test_metrics.py keeps the two equal), so both give the same figures.
"""

import datasets
import evaluate

from .mre_metrics import compute_mre_metrics


_DESCRIPTION = """
Micro precision, recall and F1 over the relations other than the negative one, and accuracy over all
instances, as the multimodal relation extraction papers report them on MNRE and MORE. A prediction is a
true positive only when it equals a gold relation that is not the negative one, so predicting the wrong
positive relation costs both precision and recall. The negative relation is `negative_label`, or else
the first of NA, na, no_relation, Other, Others, none, None found among the labels; without one, every
relation counts as positive.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted relation ids.
    references: gold relation ids.
    label_names: the relation names indexed by id. Without them (as the Hub widget calls it) the ids
        name themselves ("0", "1", ...) and 0 is the negative class, unless `negative_label` says
        which id is.
    negative_label: the "no relation" name (an id without `label_names`), overriding the automatic choice.
Returns:
    accuracy, micro_precision, micro_recall, micro_f1 (fractions in [0, 1]), num_examples,
    per_relation ({name: {precision, recall, f1, support}} for each relation but the negative one) and
    confusion_matrix (counts, rows gold and columns predicted, in label order).
Examples:
    >>> mre = evaluate.load("metrics/mre")
    >>> results = mre.compute(predictions=[0, 1, 2], references=[0, 1, 1], label_names=["None", "A", "B"])
    >>> round(results["micro_f1"], 4)
    0.5
    >>> mre.compute(predictions=[1], references=[0], label_names=["None", "A"])["micro_precision"]
    0.0
"""

_CITATION = """
@inproceedings{zheng2021multimodal,
  title={Multimodal Relation Extraction with Efficient Graph Alignment},
  author={Zheng, Changmeng and Feng, Junhao and Fu, Ze and Cai, Yi and Li, Qing and Wang, Tao},
  booktitle={Proceedings of the 29th ACM International Conference on Multimedia},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MRE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://github.com/thecharm/MNRE", "https://github.com/zjunlp/HVPNeT"],
        )

    def _compute(self, predictions, references, label_names=None, negative_label=None):
        if label_names is None:
            label_names = [str(label) for label in range(max([*predictions, *references], default=0) + 1)]
            negative_label = "0" if negative_label is None else str(negative_label)
        return compute_mre_metrics(predictions, references, label_names, negative_label=negative_label)
