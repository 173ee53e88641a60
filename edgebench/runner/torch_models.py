"""The catalogue's models in torch.nn, layer for layer as runner/keras_models.py
builds them, so that native-vs-Keras compares frameworks, not architectures.

Matched on purpose: Keras's initialisers (glorot_uniform kernels, zero biases,
truncated he_normal where keras_models asks for it), its BatchNormalization
constants (epsilon 1e-3, or 1.001e-5 inside keras.applications.ResNet50;
Keras momentum 0.99 is torch momentum 0.01), biases on every convolution, and
ResNet-50 v1 as keras.applications has it (stride on the first 1x1 of a
bottleneck; torchvision's is v1.5 with the stride on the 3x3).

Models return logits: the loss takes log-softmax itself (Keras ends in a
softmax and its loss takes the log: the same maths, less stable).

torch is imported inside functions, as everywhere in runner/.
"""

import math

_RESIDUAL = []


def build(name, input_shape, classes):
    """input_shape is (H, W, C) as in the catalogue; the model takes NCHW tensors."""
    import torch.nn as nn

    h, w, c = input_shape
    if name == "mlp":
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(h * w * c, 128), nn.ReLU(inplace=True), nn.Linear(128, classes))
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(c, 64, 3), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 3), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(32 * (h - 4) * (w - 4), classes))
    elif name == "resnet56":
        model = _resnet_v1_cifar(nn, c, classes, depth=56)
    elif name == "resnet50":
        model = _resnet50(nn, c, classes)
    else:
        raise ValueError("unknown model %r" % name)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not getattr(module, "_he_normal", False):
            nn.init.xavier_uniform_(module.weight)  # Keras glorot_uniform
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            nn.init.zeros_(module.bias)
    return model


def l2_regularised(model, name):
    """Weights that carry a Keras kernel_regularizer=l2(1e-4) in keras_models (ResNet-56 convs).

    Keras adds 1e-4 * sum(w**2) to the loss; its gradient 2e-4 * w is exactly
    torch's coupled weight_decay=2e-4 on these parameters.
    """
    import torch.nn as nn

    if name != "resnet56":
        return []
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


L2_WEIGHT_DECAY = 2e-4


def _residual_class(nn):
    # One class for both block kinds, defined on first use so that importing
    # this module needs no torch.
    if not _RESIDUAL:
        class Residual(nn.Module):
            """relu(main(x) + shortcut(x)): ResNet v1's post-activation block."""

            def __init__(self, main, shortcut):
                super(Residual, self).__init__()
                self.main = main
                self.shortcut = shortcut
                self.relu = nn.ReLU(inplace=True)

            def forward(self, x):
                return self.relu(self.main(x) + self.shortcut(x))

        _RESIDUAL.append(Residual)
    return _RESIDUAL[0]


def _he_normal(module):
    """Keras he_normal: truncated normal, stddev sqrt(2 / fan_in) / 0.8796 (the truncation's correction)."""
    import torch.nn as nn

    fan_in = module.weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    module._he_normal = True
    return module


def _keras_bn(nn, channels, eps=1e-3):
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.01)


def _cifar_layer(nn, cin, cout, kernel=3, stride=1, relu=True, batch_norm=True):
    """keras_models._resnet_layer: conv (he_normal, bias, 'same') -> BN -> relu."""
    layers = [_he_normal(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))]
    if batch_norm:
        layers.append(_keras_bn(nn, cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _resnet_v1_cifar(nn, channels, classes, depth):
    residual = _residual_class(nn)
    blocks = (depth - 2) // 6
    filters = 16
    layers = [_cifar_layer(nn, channels, filters)]
    cin = filters
    for stack in range(3):
        for block in range(blocks):
            stride = 2 if stack > 0 and block == 0 else 1
            main = nn.Sequential(
                _cifar_layer(nn, cin, filters, stride=stride),
                _cifar_layer(nn, filters, filters, relu=False))
            if stack > 0 and block == 0:
                shortcut = _cifar_layer(nn, cin, filters, kernel=1, stride=stride, relu=False,
                                        batch_norm=False)
            else:
                shortcut = nn.Identity()
            layers.append(residual(main, shortcut))
            cin = filters
        filters *= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), _he_normal(nn.Linear(cin, classes))]
    return nn.Sequential(*layers)


_APP_BN_EPS = 1.001e-5  # keras.applications.ResNet50's BatchNormalization epsilon


def _bottleneck(nn, residual, cin, filters, stride, conv_shortcut):
    """keras.applications resnet block1: 1x1 (stride) -> 3x3 -> 1x1 x4, each conv with bias."""
    main = nn.Sequential(
        nn.Conv2d(cin, filters, 1, stride=stride), _keras_bn(nn, filters, _APP_BN_EPS), nn.ReLU(inplace=True),
        nn.Conv2d(filters, filters, 3, padding=1), _keras_bn(nn, filters, _APP_BN_EPS), nn.ReLU(inplace=True),
        nn.Conv2d(filters, 4 * filters, 1), _keras_bn(nn, 4 * filters, _APP_BN_EPS))
    if conv_shortcut:
        shortcut = nn.Sequential(
            nn.Conv2d(cin, 4 * filters, 1, stride=stride), _keras_bn(nn, 4 * filters, _APP_BN_EPS))
    else:
        shortcut = nn.Identity()
    return residual(main, shortcut)


def _resnet50(nn, channels, classes):
    residual = _residual_class(nn)
    layers = [
        nn.ZeroPad2d(3), nn.Conv2d(channels, 64, 7, stride=2), _keras_bn(nn, 64, _APP_BN_EPS),
        nn.ReLU(inplace=True), nn.ZeroPad2d(1), nn.MaxPool2d(3, stride=2),
    ]
    cin = 64
    for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        layers.append(_bottleneck(nn, residual, cin, filters, stride, True))
        cin = 4 * filters
        for _ in range(blocks - 1):
            layers.append(_bottleneck(nn, residual, cin, filters, 1, False))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)
