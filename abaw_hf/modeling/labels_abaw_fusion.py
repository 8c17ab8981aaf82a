"""The ABAW label space (class and AU names, the missing-label markers), the model's option names and the defaults
of the settings training passes to the model.

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

# The defaults of the AbawFusionConfig fields that training sets (`abaw_hf.training.config.MODEL_SETTINGS`): the one
# definition, read by AbawFusionConfig's fields and by TrainConfig's (whose --flags --help shows without transformers).
MODEL_DEFAULTS = {
    "fusion": "concat", "hidden_size": 384, "concat_projection": None, "position_encoding": "sinusoidal",
    "num_hidden_layers": 4, "num_attention_heads": 4, "mlp_ratio": 4.0, "hidden_dropout_prob": 0.1,
    "attention_dropout_prob": 0.0, "va_loss_weight": 1.0, "expression_loss_weight": 1.0, "au_loss_weight": 2.0,
}
