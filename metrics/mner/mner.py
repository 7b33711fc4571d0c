"""
The metric of the multimodal NER papers (Twitter-2015, Twitter-2017: UMT, HVPNeT, MMIB) as an `evaluate`
module: seqeval's entity-level micro precision, recall and F1 in its default mode, per-type scores and
token accuracy. It is `modeling_mre.compute_ner_metrics` itself: `entities_mner.py` beside this file is
a copy of `modeling_mre/models/entities_mner.py` (a real file, so the folder deploys as it is;
tests/test_metrics.py keeps the two equal).
"""

import datasets
import evaluate

from .entities_mner import compute_ner_metrics


_DESCRIPTION = """
Entity-level micro precision, recall and F1 over BIO tag sequences, as seqeval computes them in its
default mode (the mode the multimodal NER papers' logs use): an entity counts when its span and its type
are both exact, and an I- tag that does not continue an entity of its type opens one. Also per-type
scores and token accuracy.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted tags, one list of tag names per sentence (B-PER, I-PER, O, ...).
    references: gold tags, the same lengths.
Returns:
    micro_precision, micro_recall, micro_f1, accuracy (of tokens; fractions in [0, 1]), per_type
    ({type: {precision, recall, f1, support}}) and num_sentences.
Examples:
    >>> mner = evaluate.load("metrics/mner")
    >>> results = mner.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "B-LOC"]])
    >>> round(results["micro_f1"], 4)
    0.6667
"""

_CITATION = """
@inproceedings{yu2020umt,
  title={Improving Multimodal Named Entity Recognition via Entity Span Detection with Unified Multimodal Transformer},
  author={Yu, Jianfei and Jiang, Jing and Yang, Li and Xia, Rui},
  booktitle={Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MNER(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/jefferyYu/UMT", "https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions, references):
        return compute_ner_metrics(predictions, references)
