"""The Keras 3 -> tf_keras bridge, checked on real models by equal outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tinyflow.errors import InputError
from tinyflow.model.bridge import rebuild_in_tf_keras, supported_layers


@pytest.fixture(scope="module")
def keras():
    from tinyflow.model.tfenv import keras3

    return keras3()


def _outputs(model, x):
    y = model(x, training=False)
    return [np.asarray(a) for a in (y if isinstance(y, list | tuple) else [y])]


def test_every_tinyml_layer_is_rebuilt_with_equal_outputs(keras, tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(3)
    img = keras.Input((12, 12, 3), name="img")
    x = L.ZeroPadding2D(1)(img)
    x = L.Conv2D(8, 3, strides=2, activation="relu6")(x)
    x = L.BatchNormalization()(x)
    d = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    d = L.LeakyReLU(negative_slope=0.2)(d)
    s = L.SeparableConv2D(16, 3, padding="same", activation="swish")(x)
    x = L.Concatenate()([d, s])
    x = L.Conv2D(16, 1)(x)
    x = L.ReLU(max_value=6.0)(x)
    a = L.Add()([x, L.Activation("tanh")(x)])
    a = L.MaxPooling2D(2)(a)
    a = L.AveragePooling2D(1)(a)
    g = L.GlobalAveragePooling2D()(a)
    m = L.GlobalMaxPooling2D()(a)
    f = L.Flatten()(a)
    f = L.Dropout(0.3)(f)
    f = L.Reshape((-1, 8))(f)
    f = L.Conv1D(4, 3, padding="same", activation="sigmoid")(f)
    f = L.SeparableConv1D(4, 3, padding="same")(f)
    f = L.ZeroPadding1D(1)(f)
    f = L.MaxPooling1D(2)(f)
    f = L.AveragePooling1D(1)(f)
    f = L.GlobalAveragePooling1D()(f)
    h = L.Concatenate()([g, m, f])
    h = L.Dense(10, activation="elu")(h)
    out1 = L.Softmax()(L.Dense(5)(h))
    out2 = L.Dense(2, activation="linear")(h)
    model = keras.Model(img, [out1, out2])
    # Give BatchNorm non-trivial statistics so a dropped weight would show.
    bn = next(layer for layer in model.layers if isinstance(layer, L.BatchNormalization))
    bn.set_weights([w + np.random.default_rng(0).normal(0, 0.5, w.shape).astype("float32") ** 2
                    for w in bn.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    rebuilt = rebuild_in_tf_keras(loaded, path)

    x = np.random.default_rng(1).normal(size=(3, 12, 12, 3)).astype("float32")
    for a_, b_ in zip(_outputs(loaded, x), _outputs(rebuilt, x), strict=True):
        np.testing.assert_allclose(a_, b_, rtol=1e-4, atol=1e-5)
    assert type(rebuilt).__module__.startswith("tf_keras")


def test_sequential_model_is_rebuilt(keras, tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    rebuilt = rebuild_in_tf_keras(model, tmp_path / "seq.keras")
    x = np.ones((2, 6), "float32")
    np.testing.assert_allclose(_outputs(model, x)[0], _outputs(rebuilt, x)[0], rtol=1e-5, atol=1e-6)


def test_unsupported_layer_is_named(keras, tmp_path):
    # LSTM was the example until the bridge learned it; RepeatVector is not bridged.
    inp = keras.Input((4,))
    out = keras.layers.RepeatVector(2)(inp)
    model = keras.Model(inp, out)
    with pytest.raises(InputError) as e:
        rebuild_in_tf_keras(model, tmp_path / "repeat.keras")
    assert "RepeatVector" in str(e.value) and "repeat.keras" in str(e.value) and "Dense" in str(e.value)


def test_nested_model_is_a_clear_error(keras, tmp_path):
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="inner")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inner(inp)))
    with pytest.raises(InputError, match="nested model"):
        rebuild_in_tf_keras(model, tmp_path / "nested.keras")


def test_supported_layers_cover_the_issue_list():
    want = {"Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
            "BatchNormalization", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Activation",
            "ReLU", "Flatten", "Reshape", "Dropout", "Add", "Concatenate", "ZeroPadding2D"}
    assert want <= set(supported_layers())
