"""Sequential recommenders behind one interface (:mod:`.interface`): GPTRec (the paper's), SASRec,
BERT4Rec, or a user's own model (:mod:`.adapter`), chosen by ``model.arch`` (:mod:`.registry`)."""

from .gptrec import GPTRec  # noqa: F401
from .interface import Intervention, ModelOutput, SequentialRecommender, Where  # noqa: F401
