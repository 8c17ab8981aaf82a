"""The ABAW label space (class and AU names, the missing-label markers) and the model's option names.

Plain Python on purpose: data, metrics, training settings and command-line modules import these without loading
torch or transformers. Self-contained (it ships as remote code with the modeling files).
"""

EXPRESSION_NAMES = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"]
AU_NAMES = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
NUM_EXPRESSIONS = len(EXPRESSION_NAMES)
NUM_AUS = len(AU_NAMES)

# ABAW's missing-label markers. The one definition: datasets, losses, metrics and submissions import these.
MISSING_VA = -5.0
MISSING_EXPRESSION = -1
MISSING_AU = -1

# The config's choices, named here so training settings can check them without transformers.
FUSION_MODES = ("concat", "tokens")
POSITION_ENCODINGS = ("sinusoidal", "learned", "none")
