"""Model definitions in the Keras functional API, shared by Keras 3 and the
Keras 2.2.4 stacks (the ``keras`` module is passed in)."""


def build(keras, model_name, input_shape, classes, data_format, mixed=False):
    """input_shape is channels-last (H, W, C); transposed for channels_first."""
    layers = keras.layers
    h, w, c = input_shape
    shape = (c, h, w) if data_format == "channels_first" else (h, w, c)
    inputs = layers.Input(shape=shape)
    if model_name == "mlp":
        x = layers.Flatten()(inputs)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dense(classes)(x)
    elif model_name == "cnn":
        x = layers.Conv2D(64, (3, 3), activation="relu", data_format=data_format)(inputs)
        x = layers.Conv2D(32, (3, 3), activation="relu", data_format=data_format)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(classes)(x)
    elif model_name == "resnet56":
        x = _resnet_v1(keras, inputs, depth=56, data_format=data_format)
        x = layers.Dense(classes, kernel_initializer="he_normal")(x)
    elif model_name == "resnet50":
        base = keras.applications.ResNet50(
            include_top=False, weights=None, input_tensor=inputs, pooling="avg"
        )
        x = layers.Dense(classes)(base.output)
    else:
        raise ValueError("unknown model %r" % model_name)
    # softmax in float32 under mixed precision, as the Keras guide advises
    if mixed:
        outputs = layers.Activation("softmax", dtype="float32")(x)
    else:
        outputs = layers.Activation("softmax")(x)
    return keras.models.Model(inputs, outputs)


def _resnet_layer(keras, x, filters, data_format, kernel_size=3, strides=1, activation="relu",
                  batch_norm=True):
    layers = keras.layers
    axis = 1 if data_format == "channels_first" else -1
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.l2(1e-4), data_format=data_format,
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(axis=axis)(x)
    if activation is not None:
        x = layers.Activation(activation)(x)
    return x


def _resnet_v1(keras, inputs, depth, data_format):
    """ResNet v1 for CIFAR (He et al. 2016), as in the Keras cifar10_resnet example."""
    layers = keras.layers
    filters = 16
    blocks = (depth - 2) // 6
    x = _resnet_layer(keras, inputs, filters, data_format)
    for stack in range(3):
        for block in range(blocks):
            strides = 2 if stack > 0 and block == 0 else 1
            y = _resnet_layer(keras, x, filters, data_format, strides=strides)
            y = _resnet_layer(keras, y, filters, data_format, activation=None)
            if stack > 0 and block == 0:
                x = _resnet_layer(keras, x, filters, data_format, kernel_size=1, strides=strides,
                                  activation=None, batch_norm=False)
            x = layers.add([x, y])
            x = layers.Activation("relu")(x)
        filters *= 2
    x = layers.GlobalAveragePooling2D(data_format=data_format)(x)
    return x


def optimizer(keras, name, learning_rate):
    opts = keras.optimizers
    if name == "adam":
        cls = opts.Adam
    elif name == "rmsprop":
        cls = opts.RMSprop
    elif name == "sgd":
        cls = opts.SGD
    else:
        raise ValueError("unknown optimizer %r" % name)
    try:
        return cls(learning_rate=learning_rate)
    except TypeError:  # Keras 2.2.4 calls it lr
        return cls(lr=learning_rate)
