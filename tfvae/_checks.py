"""Checks of model arguments and data, made before any work is done.

Arrays are checked in full before `fit`, `evaluate` or `predict` starts. A
`tf.data.Dataset` has its element spec checked up front and its values checked
batch by batch inside the compiled step, before that step's update; the
resulting error is re-raised as the same `ValueError` by `data_errors()`.
"""

import contextlib
import math
import numbers
import re

import numpy as np
import tensorflow as tf
from keras import ops

# Marks the messages of in-graph assertions so `data_errors` can find them.
_MARK = "tfvae data check: "
_NON_FINITE_MARK = "tfvae non-finite check: "
_SKIPS_MARK = "tfvae skipped updates: "


def positive_int(value, name, minimum=1):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def shape_tuple(value, name, allow_empty=False):
    """A tuple of positive integers (an int is a one-element tuple)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
        ok = all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
            for d in shape
        )
    except TypeError:
        ok = False
    if not ok or (not shape and not allow_empty):
        what = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(
            f"`{name}` must be {what} of positive integers. Received: {name}={value!r}"
        )
    return tuple(int(d) for d in shape)


def finite_float(value, name, minimum=-math.inf, what="a finite number"):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return float(value)


def non_negative_float(value, name):
    return finite_float(value, name, 0.0, "a non-negative finite number")


def positive_threshold(value, name):
    """A number > 0, `inf` allowed (a threshold that only NaN exceeds)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or math.isnan(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a number > 0 (inf allowed). Received: {name}={value!r}"
        )
    return float(value)


def boolean(value, name):
    """True or False itself: not 1, 0 or "yes" (`1 in (False, True)` is True)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def one_of(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )
    return value


def get_object(identifier, base, from_name, kind, names):
    """An instance of `base` for an instance, a name or a Keras config dict.

    The `get` of the heads and the priors: an instance is returned as is, a
    name goes to `from_name`, and a config dict is deserialized. Anything else
    raises a `ValueError` that lists the valid `names` of the `kind`.
    """
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        return from_name(identifier)
    if isinstance(identifier, dict):
        import keras

        found = keras.saving.deserialize_keras_object(identifier)
        if isinstance(found, base):
            return found
    raise ValueError(
        f"A {kind} must be one of {list(names)} or a "
        f"{'.'.join(base.__module__.split('.')[:2])}."
        f"{base.__name__}. Received: {kind}={identifier!r}"
    )


def _expected(input_shape):
    return f"(batch, {', '.join(str(d) for d in input_shape)})"


def _support_problem(name, support, low, high):
    """The message for data outside the support; low and high are strings."""
    return (
        f"`{name}` holds values in [{low}, {high}], but the Bernoulli "
        f"likelihood needs targets in [{support[0]:g}, {support[1]:g}]."
    )


def check_array(x, input_shape, support, name="x"):
    """Checks an array-like batch of examples in full. Returns nothing."""
    a = np.asarray(x)
    if a.shape[1:] != tuple(input_shape) or a.ndim != len(input_shape) + 1:
        raise ValueError(
            f"`{name}` must have shape {_expected(input_shape)} to match the "
            f"model's input_shape={tuple(input_shape)}. Received: "
            f"{name}.shape={a.shape}"
        )
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(
            f"`{name}` must hold numbers. Received: {name}.dtype={a.dtype}"
        )
    if np.issubdtype(a.dtype, np.inexact):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(
                f"`{name}` contains {bad} NaN or Inf values; expected finite "
                "values only."
            )
    if support is not None and a.size:
        low, high = float(a.min()), float(a.max())
        if low < support[0] or high > support[1]:
            raise ValueError(_support_problem(name, support, f"{low:g}", f"{high:g}"))


def check_spec(spec, input_shape, name="x"):
    """Checks the static shape of one tensor spec or tensor against input_shape."""
    shape = tf.TensorShape(spec.shape)
    expected = tf.TensorShape([None, *input_shape])
    if shape.rank is not None and not shape.is_compatible_with(expected):
        hint = ""
        if shape.rank == len(input_shape):
            hint = " It looks unbatched: call `.batch(batch_size)` on the dataset."
        raise ValueError(
            f"`{name}` must have shape {_expected(input_shape)} to match the "
            f"model's input_shape={tuple(input_shape)}. Received: "
            f"{name}.shape={tuple(shape.as_list())}.{hint}"
        )


def check_data(data, input_shape, support, name="x"):
    """Checks what `fit`/`evaluate`/`predict` accept, as far as possible up front.

    Arrays and tensors are checked in full; for a `tf.data.Dataset`, the element
    spec; a tuple is `(x, y)` or `(x, y, sample_weight)` and only `x` is
    checked. Other inputs (generators, `PyDataset`) are checked in the step.
    """
    if data is None:
        return
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, (tuple, list)):
            spec = spec[0]
        if isinstance(spec, tf.TensorSpec):
            check_spec(spec, input_shape, name)
        return
    if isinstance(data, (tuple, list)):
        if data and not np.isscalar(data[0]):
            check_data(data[0], input_shape, support, name)
        return
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        check_array(data, input_shape, support, name)


def data_assertion(condition, message, values=None):
    """An in-graph assertion of a data check, raised by `data_errors` as a
    `ValueError` with `message` (its `{}` filled with the tensors `values`)."""
    if values is None:
        return tf.debugging.Assert(condition, [_MARK + message])
    return tf.debugging.Assert(condition, [tf.strings.format(_MARK + message, values)])


def check_batch(x, input_shape, support, name="x", values=True):
    """In-graph check of one batch; returns x as float32, after the checks.

    The shape is checked when the step is traced (a `ValueError` then); with
    `values`, the values by assertions that every later computation depends
    on. XLA has no assertions (nor string ops): pass `values=False` in a step
    compiled with `jit_compile=True`.
    """
    check_spec(x, input_shape, name)
    x = ops.cast(x, "float32")
    if not values:
        return x
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(x)),
            [
                f"{_MARK}`{name}` contains NaN or Inf values; "
                "expected finite values only."
            ],
        )
    ]
    if support is not None:
        low, high = tf.reduce_min(x), tf.reduce_max(x)
        problem = _support_problem(name, support, "{}", "{}")
        checks.append(
            tf.debugging.Assert(
                tf.logical_and(low >= support[0], high <= support[1]),
                [tf.strings.format(_MARK + problem, (low, high))],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(x)


# A metric whose batch mean exceeds this many nats per data dimension has
# diverged: no likelihood of tfvae's comes near it (a Bernoulli model starts
# below 1 nat per pixel; a run with a learning rate of 1e6 reaches 1e14).
DIVERGENCE_LIMIT_PER_DIMENSION = 1e6


def diverged(value, limit):
    """Whether a metric value is non-finite or beyond `limit` in magnitude."""
    return not math.isfinite(value) or abs(value) > limit


def check_finite(values, step, limit=math.inf):
    """An in-graph assertion that the batch mean of every value is finite.

    `values` maps metric names to tensors; `step` is the 1-based training
    step; `limit` bounds the magnitude of the means (a diverged run can stay
    finite). No string is formatted in the graph (the step stays cheap):
    `data_errors` turns a failure into a `FloatingPointError` that names the
    step and the first diverged metric.
    """
    names = list(values)
    means = tf.stack([tf.reduce_mean(tf.cast(values[n], "float32")) for n in names])
    ok = tf.math.is_finite(means) & (tf.abs(means) <= limit)
    return tf.debugging.Assert(
        tf.reduce_all(ok),
        [f"{_NON_FINITE_MARK}{','.join(names)}", step, means, limit],
        summarize=len(names),
    )


def _non_finite_message(detail):
    """The message of a failed `check_finite`, from its printed data."""
    # The assertion prints its data in brackets:
    # "[names] [step] [m1 m2 ...] [limit]".
    parts = re.findall(r"\[([^\[\]]*)\]", detail)
    names = parts[0].removeprefix(_NON_FINITE_MARK).split(",")
    step, means = parts[1], parts[2].split()
    limit = float(parts[3]) if len(parts) > 3 else math.inf
    bad = [i for i, mean in enumerate(means) if diverged(float(mean), limit)]
    name, mean = names[bad[0] if bad else 0], means[bad[0] if bad else 0]
    return divergence_message(
        step,
        name,
        mean,
        "batch mean",
        "The weights are those from before this step.",
        limit,
    )


def divergence_message(step, name, value, averaged_over, weights, limit=math.inf):
    """The message of the `FloatingPointError` that stops a diverged run.

    Args:
        step: the 1-based training step.
        name, value: the first diverged metric and its value.
        averaged_over: what the value is a mean over.
        weights: a sentence on the state the weights are left in.
        limit: the bound on its magnitude.
    """
    beyond = ""
    if math.isfinite(float(value)):
        beyond = f", beyond the divergence limit of {float(limit):.3g} in magnitude"
    return (
        f"training stopped at step {step}: `{name}` is {value} ({averaged_over})"
        f"{beyond}. "
        f"{weights} Lower the learning rate, or check the data and the scales of "
        "the likelihood."
    )


def check_skips(consecutive, limit, step, norm, threshold):
    """An in-graph assertion that at most `limit` updates in a row were skipped.

    `data_errors` turns a failure into a `FloatingPointError` from
    `skips_message`.
    """
    return tf.debugging.Assert(
        consecutive <= limit,
        [_SKIPS_MARK, consecutive, step, norm, threshold],
    )


def skips_message(consecutive, step, norm, threshold):
    """The message of the error that stops a run stuck skipping its updates."""
    return (
        f"training stopped before update {step}: the last {consecutive} steps "
        f"were all skipped (the last gradient norm was {norm}, the skip threshold "
        f"{threshold}; non-finite norms are always skipped), more than "
        "max_consecutive_skips allows. The run is stuck: the weights are those "
        "from before the first skipped step. Lower the learning rate, raise "
        "skip_threshold, or check the data."
    )


def _skips_message(detail):
    """`skips_message` from the printed data of a failed `check_skips`."""
    # "[mark] [consecutive] [step] [norm] [threshold]"
    parts = re.findall(r"\[([^\[\]]*)\]", detail)
    return skips_message(*parts[1:5])


@contextlib.contextmanager
def data_errors():
    """Re-raises a failed in-graph check as `ValueError` or `FloatingPointError`.

    A data check fails on bad input; a non-finite check when training
    diverges.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = error.message
        for mark, describe in (
            (_SKIPS_MARK, _skips_message),
            (_NON_FINITE_MARK, _non_finite_message),
        ):
            if mark in message:
                detail = message[message.index(mark) - 1 :].splitlines()[0]
                raise FloatingPointError(describe(detail)) from error
        if _MARK not in message:
            raise
        detail = message[message.index(_MARK) + len(_MARK) :].splitlines()[0]
        # The assertion prints its message in brackets: "[message]".
        raise ValueError(detail.removesuffix("]")) from error
