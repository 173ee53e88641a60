"""The catalogue's models in Flax (linen), layer for layer as runner/keras_models.py
builds them, so that native JAX against Keras-JAX compares Keras with JAX, not
two architectures (torch_models.py does the same for torch).

Matched on purpose: Keras's initialisers (glorot_uniform kernels and zero
biases by default; he_normal, Keras's VarianceScaling(2, fan_in,
truncated_normal), where keras_models asks for it, which is the same
variance_scaling call here), its BatchNormalization constants (epsilon 1e-3,
or 1.001e-5 inside keras.applications.ResNet50; momentum 0.99 means the same
in Flax), biases on every convolution, 'valid' or 'same' padding as Keras
has it, and ResNet-50 v1 as keras.applications has it (stride on the first
1x1 of a bottleneck). Inputs are NHWC (channels_last), Keras's default.

Models return logits; the loss takes log-softmax itself (Keras ends in a
softmax and its loss takes the log: the same maths). Under bf16 a layer
computes in bfloat16 and keeps float32 parameters (Keras ``mixed_bfloat16``);
Flax's BatchNorm reduces its statistics in float32 as Keras's does.

flax and jax are imported inside functions, as everywhere in runner/.
"""

# ResNet-56's convolutions carry kernel_regularizer=l2(1e-4) in keras_models:
# Keras adds 1e-4 * sum(w ** 2) to the loss; the backend adds the same term.
L2_CONV = 1e-4
_APP_BN_EPS = 1.001e-5  # keras.applications.ResNet50's BatchNormalization epsilon
_KERAS_BN_EPS = 1e-3
_KERAS_BN_MOMENTUM = 0.99


def build(name, classes, dtype):
    """A flax.linen Module for catalogue model `name`; dtype: the compute dtype (params stay float32)."""
    import flax.linen as nn
    import jax.numpy as jnp

    glorot = nn.initializers.glorot_uniform()
    he = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
    zeros = nn.initializers.zeros

    def dense(features, init=glorot):
        return nn.Dense(features, kernel_init=init, bias_init=zeros, dtype=dtype)

    def conv(features, kernel, strides=1, padding="VALID", init=glorot):
        return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding=padding,
                       kernel_init=init, bias_init=zeros, dtype=dtype)

    def bn(train, eps):
        return nn.BatchNorm(use_running_average=not train, momentum=_KERAS_BN_MOMENTUM, epsilon=eps, dtype=dtype)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = x.reshape((x.shape[0], -1))
            x = nn.relu(dense(128)(x))
            return dense(classes)(x)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = nn.relu(conv(64, 3)(x))
            x = nn.relu(conv(32, 3)(x))
            x = x.reshape((x.shape[0], -1))
            return dense(classes)(x)

    def cifar_layer(x, train, filters, kernel=3, strides=1, relu=True, batch_norm=True):
        """keras_models._resnet_layer: conv (he_normal, bias, 'same', l2) -> BN -> relu."""
        x = conv(filters, kernel, strides, padding="SAME", init=he)(x)
        if batch_norm:
            x = bn(train, _KERAS_BN_EPS)(x)
        return nn.relu(x) if relu else x

    class ResNet56(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            blocks = (56 - 2) // 6
            filters = 16
            x = cifar_layer(x, train, filters)
            for stack in range(3):
                for block in range(blocks):
                    strides = 2 if stack > 0 and block == 0 else 1
                    y = cifar_layer(x, train, filters, strides=strides)
                    y = cifar_layer(y, train, filters, relu=False)
                    if stack > 0 and block == 0:
                        x = cifar_layer(x, train, filters, kernel=1, strides=strides, relu=False, batch_norm=False)
                    x = nn.relu(x + y)
                filters *= 2
            x = jnp.mean(x, axis=(1, 2))
            return dense(classes, init=he)(x)

    def bottleneck(x, train, filters, strides, conv_shortcut):
        """keras.applications resnet block1: 1x1 (stride) -> 3x3 -> 1x1 x4, each conv with bias."""
        if conv_shortcut:
            shortcut = conv(4 * filters, 1, strides)(x)
            shortcut = bn(train, _APP_BN_EPS)(shortcut)
        else:
            shortcut = x
        x = nn.relu(bn(train, _APP_BN_EPS)(conv(filters, 1, strides)(x)))
        x = nn.relu(bn(train, _APP_BN_EPS)(conv(filters, 3, padding="SAME")(x)))
        x = bn(train, _APP_BN_EPS)(conv(4 * filters, 1)(x))
        return nn.relu(shortcut + x)

    class ResNet50(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))  # ZeroPadding2D(3)
            x = nn.relu(bn(train, _APP_BN_EPS)(conv(64, 7, 2)(x)))
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # ZeroPadding2D(1)
            x = nn.max_pool(x, (3, 3), strides=(2, 2))
            for filters, blocks, strides in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                x = bottleneck(x, train, filters, strides, True)
                for _ in range(blocks - 1):
                    x = bottleneck(x, train, filters, 1, False)
            x = jnp.mean(x, axis=(1, 2))  # pooling="avg"
            return dense(classes)(x)

    models = {"mlp": MLP, "cnn": CNN, "resnet56": ResNet56, "resnet50": ResNet50}
    if name not in models:
        raise ValueError("unknown model %r" % name)
    return models[name]()


def l2_penalty(name, params):
    """The loss term Keras adds for keras_models' kernel regularisers (ResNet-56's convolutions)."""
    import jax
    import jax.numpy as jnp

    if name != "resnet56":
        return 0.0
    total = 0.0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [getattr(p, "key", "") for p in path]
        if keys[-1] == "kernel" and any(str(k).startswith("Conv_") for k in keys):
            total = total + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return L2_CONV * total


def optimizer(name, learning_rate):
    """Keras's optimisers with Keras's defaults (Adam/RMSprop epsilon 1e-7, RMSprop rho 0.9, eps outside
    the square root), in optax."""
    import optax

    if name == "adam":
        return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-7)
    if name == "rmsprop":
        try:
            return optax.rmsprop(learning_rate, decay=0.9, eps=1e-7, eps_in_sqrt=False)
        except TypeError:  # an optax without eps_in_sqrt (eps outside already)
            return optax.rmsprop(learning_rate, decay=0.9, eps=1e-7)
    if name == "sgd":
        return optax.sgd(learning_rate)
    raise ValueError("unknown optimizer %r" % name)
