"""Export fitted estimators to ONNX, through skl2onnx.

Importing this module registers converters for :class:`~skbatchnet.BatchMLPRegressor`
and :class:`~skbatchnet.BatchMLPClassifier` with skl2onnx, after which
``skl2onnx.to_onnx(model, X)`` and ``skl2onnx.convert_sklearn`` export them,
alone or as a step of a :class:`~sklearn.pipeline.Pipeline`. It needs the
``onnx`` extra (``pip install "skbatchnet[onnx]"``: skl2onnx, onnx, and
onnxruntime to run the exported graphs).

Registration happens on importing this module, not on importing
``skbatchnet``: skl2onnx is an optional dependency, and registering changes
skl2onnx's global registry, which only a program that asked for it should
see. The import is that request, made once where the program converts;
:func:`register_converters` repeats it (it is idempotent), for a program
that has since registered other converters for the same classes.

What the graph computes is what ``predict`` and ``predict_proba`` compute,
from the same weights: ``coefs_`` and ``intercepts_``, which hold the weight
average when the estimator was fitted with ``average=``. It computes in
double precision when the input is double and the model's weights are
float64, and in single precision otherwise (``predict`` of a float32 model
computes in float32 too). The classifier's outputs are skl2onnx's: the
labels, then the probabilities; its options ``zipmap`` (True, False or
``'columns'``) and ``nocl`` are honoured. ONNX's ZipMap takes only single
precision, so with ``zipmap=True`` the probabilities are float32 whatever
the input; ``zipmap=False`` keeps them double. Nothing of training is
exported: not the optimizer's state, the raw weights behind an average, nor
the loss.

Examples
--------
>>> import numpy as np
>>> import onnxruntime as ort
>>> from skl2onnx import to_onnx
>>> from sklearn.datasets import make_classification
>>> import skbatchnet.onnx  # registers the converters
>>> from skbatchnet import BatchMLPClassifier
>>> X, y = make_classification(n_samples=100, n_features=5, random_state=0)
>>> clf = BatchMLPClassifier((8,), max_iter=50, random_state=0).fit(X, y)
>>> graph = to_onnx(clf, X[:1], options={"zipmap": False})
>>> session = ort.InferenceSession(graph.SerializeToString())
>>> labels, proba = session.run(None, {"X": X})
>>> bool((labels == clf.predict(X)).all())
True
>>> bool(np.allclose(proba, clf.predict_proba(X), rtol=1e-10, atol=1e-12))
True
"""

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from skl2onnx.common.utils import check_input_and_output_numbers
from sklearn.utils.validation import check_is_fitted

from ._mlp import BatchMLPClassifier, BatchMLPRegressor

__all__ = ["CLASSIFIER_OPTIONS", "MIN_OPSET", "register_converters"]

CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [False, True]}
"""The skl2onnx options the classifier's converter honours, with their values.

``zipmap``: the probabilities as a list of ``{label: probability}`` dicts
(True, skl2onnx's default), as a tensor (False), or as one output per class
(``'columns'``). ``nocl``: the labels are the class indices ``0 .. n - 1``
instead of ``classes_``. skl2onnx refuses any other option, naming it.
"""

MIN_OPSET = 13
"""The lowest ONNX opset the graphs are written for (Softmax on any axis,
Squeeze and Unsqueeze with their axes as inputs); a lower ``target_opset`` is
refused."""

# ONNX operators of the estimators' activation names; None adds no node.
_HIDDEN = {"identity": None, "logistic": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
_REGRESSOR_OUTPUT = {"identity": "Identity", "exp": "Exp"}
_TENSOR_TYPE = {
    TensorProto.FLOAT: FloatTensorType,
    TensorProto.DOUBLE: DoubleTensorType,
}


def register_converters():
    """Register the converters of both estimators with skl2onnx.

    Importing :mod:`skbatchnet.onnx` calls it; calling it again replaces
    whatever converters were registered for the two classes since. The
    classes are registered under the aliases ``'SkbatchnetBatchMLPRegressor'``
    and ``'SkbatchnetBatchMLPClassifier'``, the classifier with the options
    :data:`CLASSIFIER_OPTIONS`, so that skl2onnx's own classifier parser adds
    the ZipMap.

    Subclasses are not covered: skl2onnx looks converters up by exact class.
    """
    update_registered_converter(
        BatchMLPRegressor,
        "SkbatchnetBatchMLPRegressor",
        _regressor_shapes,
        _convert_regressor,
        overwrite=True,
    )
    update_registered_converter(
        BatchMLPClassifier,
        "SkbatchnetBatchMLPClassifier",
        _classifier_shapes,
        _convert_classifier,
        overwrite=True,
        options=CLASSIFIER_OPTIONS,
    )


# -- what the model asks of the graph --------------------------------------------


def _unsupported(model, what, remedy):
    return ValueError(
        f"Cannot export this {type(model).__name__} to ONNX: {what}. {remedy}"
    )


def _check_model(operator):
    """The fitted model behind ``operator``, once its export is known to work."""
    check_input_and_output_numbers(operator, input_count_range=1)
    model = operator.raw_operator
    check_is_fitted(model)
    if model.activation not in _HIDDEN:
        raise _unsupported(
            model,
            f"activation={model.activation!r} has no ONNX operator here",
            f"Supported activations: {sorted(_HIDDEN)}.",
        )
    n_features = operator.inputs[0].get_second_dimension()
    if n_features is not None and n_features != model.n_features_in_:
        raise ValueError(
            f"The ONNX input has {n_features} features, but {type(model).__name__} "
            f"was fitted with {model.n_features_in_}; declare the input with "
            f"shape [None, {model.n_features_in_}]."
        )
    return model


def _compute_type(model, input_type):
    """The ONNX element type the layers compute in: double only for a double
    input into a float64 model, since ``predict`` computes in the model's
    dtype and a float32 graph is what deployment runtimes serve fastest."""
    double = isinstance(input_type, DoubleTensorType)
    if double and model.coefs_[0].dtype == np.float64:
        return TensorProto.DOUBLE
    return TensorProto.FLOAT


def _output_type(input_type):
    """The element type of the real outputs: skl2onnx's, the input's."""
    if isinstance(input_type, DoubleTensorType):
        return TensorProto.DOUBLE
    return TensorProto.FLOAT


def _classifier_kind(model):
    """``'multiclass'``, ``'binary'`` or ``'multilabel'``, from public attributes."""
    if len(model.classes_) == 1:
        raise _unsupported(
            model,
            f"it was fitted on a single class ({model.classes_.tolist()}), so its "
            "predictions do not depend on the input",
            "Fit it on at least two classes, or export a constant instead.",
        )
    if model.out_activation_ == "softmax":
        return "multiclass"
    if model.out_activation_ == "logistic":
        return "binary" if model.n_outputs_ == 1 else "multilabel"
    raise _unsupported(
        model,
        f"its output activation {model.out_activation_!r} is not a classifier's",
        "Export a BatchMLPClassifier fitted by this version of skbatchnet.",
    )


def _labels(model, kind, options):
    """The class labels as the graph outputs them: int64 or str array."""
    if options["nocl"] or kind == "multilabel":
        return np.arange(len(model.classes_), dtype=np.int64)
    classes = np.asarray(model.classes_)
    if all(isinstance(c, str) for c in classes):
        return classes.astype(object)
    try:
        integers = classes.astype(np.int64)
    except (TypeError, ValueError):
        integers = None
    if integers is None or not np.array_equal(integers, classes):
        raise _unsupported(
            model,
            f"its class labels {classes.tolist()!r} are neither strings nor "
            "integers within the int64 range, the labels an ONNX graph outputs",
            "Refit it on integer or string labels, or pass options={'nocl': True} "
            "to output the class indices.",
        )
    return integers


def _options(operator):
    defaults = {"zipmap": True, "nocl": False}
    return operator.scope_inst.get_options(operator.raw_operator, defaults)


# -- shape calculators -------------------------------------------------------------


def _regressor_shapes(operator):
    model = _check_model(operator)
    n_rows = operator.inputs[0].get_first_dimension()
    element = _output_type(operator.inputs[0].type)
    operator.outputs[0].type = _TENSOR_TYPE[element]([n_rows, model.n_outputs_])


def _probability_type(operator, options):
    """ZipMap takes only float; otherwise the probabilities follow the input."""
    if options["zipmap"] is True:
        return TensorProto.FLOAT
    return _output_type(operator.inputs[0].type)


def _classifier_shapes(operator):
    check_input_and_output_numbers(operator, output_count_range=2)
    model = _check_model(operator)
    kind = _classifier_kind(model)
    options = _options(operator)
    labels = _labels(model, kind, options)
    n_rows = operator.inputs[0].get_first_dimension()
    label_type = StringTensorType if labels.dtype == object else Int64TensorType
    shape = [n_rows, model.n_outputs_] if kind == "multilabel" else [n_rows]
    operator.outputs[0].type = label_type(shape)
    element = _probability_type(operator, options)
    operator.outputs[1].type = _TENSOR_TYPE[element]([n_rows, len(labels)])


# -- converters ----------------------------------------------------------------------


class _Graph:
    """Adds nodes and constants to skl2onnx's container, in one element type."""

    def __init__(self, scope, operator, container, element):
        if container.target_opset is not None and container.target_opset < MIN_OPSET:
            raise ValueError(
                f"Exporting {type(operator.raw_operator).__name__} needs ONNX "
                f"opset {MIN_OPSET} or later, got target_opset="
                f"{container.target_opset}; pass target_opset={MIN_OPSET} or more."
            )
        self.scope, self.container, self.element = scope, container, element
        self.dtype = np.dtype(
            np.float64 if element == TensorProto.DOUBLE else np.float32
        )

    def node(self, op_type, inputs, output=None, **attributes):
        """Add one node; return the name of its output."""
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(
            op_type,
            inputs,
            output,
            name=self.scope.get_unique_operator_name(op_type),
            **attributes,
        )
        return output

    def constant(self, values, element=None):
        """A constant (an initializer) of ``values``, in the graph's type
        unless ``element`` says otherwise; return its name."""
        name = self.scope.get_unique_variable_name("constant")
        values = np.asarray(values)
        if element == TensorProto.STRING:
            content = [str(v).encode("utf-8") for v in values.ravel()]
        elif element == TensorProto.INT64:
            content = values.astype(np.int64).ravel()
        else:
            element, content = self.element, values.astype(self.dtype).ravel()
        self.container.add_initializer(name, element, list(values.shape), content)
        return name

    def cast(self, name, element, output=None):
        """``name`` in ``element``: a Cast where the types differ."""
        if element == self.element and output is None:
            return name
        if element == self.element:
            return self.node("Identity", [name], output)
        return self.node("Cast", [name], output, to=element)

    def logits(self, model, input_name):
        """The output layer's pre-activations for the input ``input_name``."""
        A = self.node("Cast", [input_name], to=self.element)
        hidden = _HIDDEN[model.activation]
        last = len(model.coefs_) - 1
        for i, (W, b) in enumerate(zip(model.coefs_, model.intercepts_)):
            Z = self.node("Gemm", [A, self.constant(W), self.constant(b)])
            A = Z if i == last or hidden is None else self.node(hidden, [Z])
        return Z


def _logistic(graph, Z, binary):
    """The probabilities of logistic outputs, and which of them exceed 0.5.

    ``expit(z)`` as the softmax of ``[0, z]``: onnxruntime's Sigmoid rounds
    probabilities below about 1e-16 to 0, where its Softmax keeps their
    digits, as ``predict_proba`` does (a binary model's two columns are the
    softmax's two, ``expit(-z)`` and ``expit(z)``). Labels threshold the
    probability at 0.5, as ``predict`` does.
    """
    pairs = graph.node("Unsqueeze", [Z, graph.constant([2], TensorProto.INT64)])
    zeros = graph.node(
        "ConstantOfShape",
        [graph.node("Shape", [pairs])],
        value=numpy_helper.from_array(np.zeros(1, graph.dtype)),
    )
    pairs = graph.node(
        "Softmax", [graph.node("Concat", [zeros, pairs], axis=2)], axis=2
    )
    one = graph.constant(1, TensorProto.INT64)
    positive = graph.node("Gather", [pairs, one], axis=2)
    above = graph.node("Greater", [positive, graph.constant(0.5)])
    if not binary:
        return positive, above
    # One output: the two columns of each row, and its one label.
    flat = graph.constant([-1], TensorProto.INT64)
    proba = graph.node("Squeeze", [pairs, graph.constant([1], TensorProto.INT64)])
    return proba, graph.node("Reshape", [above, flat])


def _convert_regressor(scope, operator, container):
    model = operator.raw_operator
    input_type = operator.inputs[0].type
    graph = _Graph(scope, operator, container, _compute_type(model, input_type))
    Z = graph.logits(model, operator.inputs[0].full_name)
    if model.out_activation_ not in _REGRESSOR_OUTPUT:
        raise _unsupported(
            model,
            f"its output activation {model.out_activation_!r} has no ONNX operator "
            "here",
            f"Supported output activations: {sorted(_REGRESSOR_OUTPUT)}.",
        )
    Y = graph.node(_REGRESSOR_OUTPUT[model.out_activation_], [Z])
    graph.cast(Y, _output_type(input_type), output=operator.outputs[0].full_name)


def _convert_classifier(scope, operator, container):
    model = operator.raw_operator
    input_type = operator.inputs[0].type
    graph = _Graph(scope, operator, container, _compute_type(model, input_type))
    options = _options(operator)
    kind = _classifier_kind(model)
    Z = graph.logits(model, operator.inputs[0].full_name)
    label_name, proba_name = (v.full_name for v in operator.outputs)
    if kind == "multiclass":
        # predict takes the first largest probability (not logit), as here.
        proba = graph.node("Softmax", [Z], axis=1)
        index = graph.node("ArgMax", [proba], axis=1, keepdims=0)
    else:
        proba, positive = _logistic(graph, Z, binary=kind == "binary")
        index = graph.node("Cast", [positive], to=TensorProto.INT64)
    labels = _labels(model, kind, options)
    if kind == "multilabel" or options["nocl"]:
        graph.node("Identity", [index], label_name)
    else:
        element = TensorProto.STRING if labels.dtype == object else TensorProto.INT64
        graph.node(
            "Gather", [graph.constant(labels, element), index], label_name, axis=0
        )
    # predict_proba keeps probabilities strictly inside (0, 1), in the
    # output's precision: bounds that a cast to float32 would round to 0 or 1
    # would not.
    output = _probability_type(operator, options)
    double = graph.element == output == TensorProto.DOUBLE
    finfo = np.finfo(np.float64 if double else np.float32)
    low, high = graph.constant(finfo.tiny), graph.constant(1 - finfo.epsneg)
    proba = graph.node("Clip", [proba, low, high])
    graph.cast(proba, output, output=proba_name)


register_converters()
