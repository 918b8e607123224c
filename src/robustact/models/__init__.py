"""The model zoo: ``create_model(name, ...)`` and ``list_models()``.

Every model takes images (N, C, H, W) in [0, 1] (MLPs flatten inside), starts with a
:class:`Normalize` layer (``model.normalize``), and builds each activation site as its
own module from ``act_layer`` via :func:`robustact.activations.make_activation`, so
:mod:`robustact.surgery` can find and swap them. ``model.robustact_config`` records the
JSON arguments that rebuild it, and every later edit (surgery, preprocessing and
spectral-norm wrappers) appends itself there, so :func:`model_from_config` rebuilds the
edited model.

Example:
    >>> from functools import partial
    >>> from robustact.activations import SReLU
    >>> m = create_model("mlp_general", act_layers=[None, partial(SReLU, max_value=0.01)])
"""

from robustact.models import (  # noqa: F401  (each module registers its models)
    cnn,
    efficientnet,
    inception,
    mlp,
    mobilenetv2,
    preact_resnet,
    resnet,
    vgg,
    wide_resnet,
)
from robustact.models._actspec import ActSpec, describe_act_layer, resolve_act_layer
from robustact.models._common import (
    NORMALIZATION_PRESETS,
    ImageClassifier,
    Normalize,
    resolve_normalization,
)
from robustact.models._factory import (
    ModelSpec,
    create_model,
    default_input_shape,
    list_models,
    model_from_config,
    model_info,
    register_model,
)
from robustact.models._record import add_dropout, record_edit, register_edit, replay_edits
from robustact.models.cnn import LeNet5, ShallowCNN, SmallCNN
from robustact.models.mlp import MLP
from robustact.models.mobilenetv2 import MobileNetV2
from robustact.models.preact_resnet import PreActResNet
from robustact.models.resnet import ResNet
from robustact.models.vgg import VGG
from robustact.models.wide_resnet import WideResNet

del cnn, mlp, mobilenetv2, preact_resnet, resnet, vgg, wide_resnet

__all__ = [
    "MLP",
    "NORMALIZATION_PRESETS",
    "VGG",
    "ActSpec",
    "ImageClassifier",
    "LeNet5",
    "MobileNetV2",
    "ModelSpec",
    "Normalize",
    "PreActResNet",
    "ResNet",
    "ShallowCNN",
    "SmallCNN",
    "WideResNet",
    "add_dropout",
    "create_model",
    "default_input_shape",
    "describe_act_layer",
    "list_models",
    "model_from_config",
    "model_info",
    "record_edit",
    "register_edit",
    "register_model",
    "replay_edits",
    "resolve_act_layer",
    "resolve_normalization",
]
