"""Plain-language explanations of every term the app shows, for a process engineer: the Help → Glossary window and
the tooltips of metrics and settings both come from here, so they never disagree."""

from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout, QWidget

GLOSSARY: dict[str, str] = {
    "self-supervised pretraining": "The network learns what your parts look like from unlabelled images, by "
    "solving a puzzle made from the images themselves (e.g. recognising two altered copies of one image).",
    "SimCLR": "A pretraining method: two randomly altered copies of the same image should look alike to the "
    "network, copies of different images should not.",
    "embedding": "The list of numbers the network makes from an image; similar parts get similar numbers.",
    "embedding spread": "How different the images' embeddings are. Near 0 means the network sees every image "
    "the same way (collapse): stop and change the settings.",
    "effective rank": "How many independent directions the embeddings really use; higher means a richer "
    "description of the parts.",
    "alignment / uniformity": "Alignment: two copies of one image land close together (lower is better). "
    "Uniformity: different images spread out (more negative is better).",
    "k-NN accuracy": "Share of labelled images that get the label of their nearest labelled neighbours in the "
    "embedding, measured once per epoch; it should rise.",
    "epoch": "One pass over all images.",
    "training step": "One batch of images processed; the x axis of the live plots.",
    "loss": "The training objective; it should fall and then level off.",
    "learning rate": "How big each training step is.",
    "anomaly score": "How unlike the good parts an image is (a distance in the embedding, without unit). "
    "Higher is more unusual; images above the threshold are flagged NG.",
    "threshold": "The anomaly score at which a part is called NG. Calibrated as a percentile of the scores of "
    "presumed-good images; move it to trade missed defects against false alarms.",
    "review threshold": "Optional lower threshold: scores between it and the threshold are marked 'review' "
    "instead of OK or NG.",
    "AUROC": "Chance that a labelled defect scores higher than a labelled good part (1.0 = perfect, 0.5 = "
    "guessing). Measured on held-out scores: no image is compared with itself.",
    "ROC": "Defects found against false alarms for every possible threshold; the dot is the current threshold.",
    "precision / recall": "Recall: share of labelled defects found. Precision: share of alarms that are real "
    "defects. Each point is one threshold.",
    "balanced accuracy (CV)": "The classifier's accuracy averaged over classes (so a rare class counts as much as "
    "a common one), measured by cross-validation.",
    "cross-validation": "The labels are split into folds; each fold is predicted by a model fitted on the others, "
    "so every figure is measured on labels the model did not see.",
    "CV folds": "How many parts the labels are split into for cross-validation.",
    "confusion matrix": "How often each labelled class (rows) was predicted as each class (columns), out-of-fold.",
    "per-class table": "Precision, recall and F1 of each class, cross-validated, with its number of labels.",
    "precision": "Of the images predicted as this class, the share that really are.",
    "recall": "Of the images labelled as this class, the share predicted as it.",
    "F1": "One number combining precision and recall (their harmonic mean).",
    "labels": "How many images you labelled with this class.",
    "classifier": "The model that names the defect type from the embedding (prototype, logistic regression, "
    "k-NN or SVM, picked by cross-validation when set to auto).",
    "memory bank": "The embeddings of presumed-good images that new images are compared with for the anomaly score.",
    "k (anomaly)": "How many nearest good images the anomaly score averages over.",
    "threshold percentile": "Which percentile of the presumed-good images' scores becomes the threshold.",
    "min labels per class": "Classes with fewer labels are left out of the model (the Fit page asks for more).",
    "verdict": "The fit in words: 'finds defects' from the AUROC (good ≥ 0.90, fair ≥ 0.75, else poor); 'defect "
    "types' reliable when balanced accuracy ≥ 0.80 and every defect class has recall ≥ 0.60.",
    "out of date": "The labels or the pretraining changed after this model was made: fit (or export) again.",
    "device": "Where the network runs: a GPU when there is one, else the CPU.",
    "execution provider": "The ONNX Runtime back end that runs the exported model (CPUExecutionProvider = the "
    "processor, CUDA/TensorRT = an NVIDIA GPU).",
    "max |Δp|": "Largest difference between the exported model's and the training framework's outputs on the "
    "check images; tiny values mean the export is faithful.",
    "parity": "The exported model gives the same answers as the training framework on check images.",
    "ONNX": "A standard model file that the line PC runs without the training software.",
    "defect types": "How a flagged part's defect is named: the region where its anomaly map is high is described "
    "and compared with the regions of your labelled defects. Good parts are not typed; the anomaly score decides "
    "OK / NG, then the region gives the type (or 'unknown' when it resembles none of them).",
    "type accuracy": "Balanced accuracy of naming labelled defects from their regions, each typed by a head fitted "
    "without it (cross-validated): the average share of each type named correctly. 1 is perfect.",
    "type confusion": "Rows: the defect type you labelled; columns: the type its region was given by a head fitted "
    "without it. The diagonal is named correctly; click a cell to see those defects with their region.",
    "example regions": "The labelled images of the clicked cell, with the region the type was read from drawn as a "
    "white box. A box away from the defect means the anomaly map missed it: label more of that type.",
    "novelty": "How far a flagged defect's region is from the labelled regions of its nearest type (predict's "
    "novelty column); above the typing head's limit the defect is named 'unknown'.",
    "whole-image classifier": "A classifier over whole-image embeddings (good and defect classes). Kept for "
    "reference: the OK / NG decision comes from the anomaly score and the type from the defect's region.",
    "heatmap": "Where in the image the anomaly is: unpainted = like good parts, red = at the threshold.",
}


def tip(widget: QWidget | None, term: str) -> str:
    """Give ``widget`` the glossary tooltip of ``term`` (when given) and return the text.

    Raises:
        KeyError: for a term missing from the glossary (a test keeps them in step).
    """
    text = f"<b>{escape(term)}</b>: {escape(GLOSSARY[term])}"
    if widget is not None:
        widget.setToolTip(text)
    return text


class GlossaryDialog(QDialog):
    """Help → Glossary: every term, alphabetically."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Glossary")
        self.setObjectName("glossaryDialog")
        self.browser = QTextBrowser()
        items = sorted(GLOSSARY.items(), key=lambda kv: kv[0].lower())
        self.browser.setHtml("".join(f"<p><b>{escape(k)}</b>: {escape(v)}</p>" for k, v in items))
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        fm = self.fontMetrics()
        self.resize(70 * fm.averageCharWidth(), 30 * fm.height())
