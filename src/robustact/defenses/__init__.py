"""Defences beyond robust activations: input preprocessing and robust optimisation.

* :mod:`~robustact.defenses.preprocess`: ``Preprocessed(classifier, preprocess)`` and the
  steps bit-depth reduction, median smoothing (feature squeezing), JPEG-style
  quantisation and Gaussian noise injection; each declares its adaptive attack (BPDA
  through :func:`robustact.surgery.straight_through`, or EOT).
* :mod:`~robustact.defenses.autoencoder`: a denoising autoencoder and its trainer.
* :mod:`~robustact.defenses.robust_opt`: the input-gradient penalty, spectral
  normalisation and Lipschitz / Parseval penalties (registered as training objectives).
"""

from robustact.defenses.autoencoder import DenoisingAutoencoder, train_autoencoder
from robustact.defenses.preprocess import (
    PREPROCESSORS,
    BitDepthReduction,
    GaussianNoise,
    JPEGQuantization,
    MedianSmoothing,
    Preprocess,
    Preprocessed,
    dct_matrix,
    feature_squeezing,
    get_preprocess,
    jpeg_quant_table,
    list_preprocessors,
)
from robustact.defenses.robust_opt import (
    GradientPenalty,
    LipschitzPenalty,
    apply_spectral_norm,
    input_gradient_norm,
    weight_layers,
)

__all__ = [
    "PREPROCESSORS",
    "BitDepthReduction",
    "DenoisingAutoencoder",
    "GaussianNoise",
    "GradientPenalty",
    "JPEGQuantization",
    "LipschitzPenalty",
    "MedianSmoothing",
    "Preprocess",
    "Preprocessed",
    "apply_spectral_norm",
    "dct_matrix",
    "feature_squeezing",
    "get_preprocess",
    "input_gradient_norm",
    "jpeg_quant_table",
    "list_preprocessors",
    "train_autoencoder",
    "weight_layers",
]
