"""Names the command line needs before any heavy library is imported (``covidseg --help`` stays fast)."""

DEFAULT_MODEL = "covidseg_multiclass"
DEFAULT_BINARY_MODEL = "covidseg_binary"
DEFAULT_LUNG_MODEL = "covidseg_lungs"
INTENSITY_SPACES = ("medseg8", "lung")                      # what a network reads (bundle cards)
PRECISIONS = ("auto", "fp32", "bf16")                          # predict2d.use_bf16
DECISIONS = ("argmax", "union")                                # predict2d.class_indices
DEFAULT_DECISION = "union"                                     # CV-better (docs/MODELS.md, 0.15.0)
LESION_THRESHOLD = 0.4   # union: GGO + consolidation at least this is a lesion (nested CV, docs/MODELS.md)
SCHEDULES = ("cosine", "exponential", "constant")            # trainer
ENCODING_NAMES = ("labels", "binary", "medseg-multiclass")   # evaluate.ENCODINGS
