"""The ``label`` of feedback items per task: what a labeler sends, mapped to the feedback log's label by the
served model's dataset spec (:class:`LabelDecoder`; :meth:`kfloop.spec.DatasetSpec.label_of`)."""

from __future__ import annotations

from serving import request as schema


def _got(value) -> str:
    """What a label was, for an error message: ``null``, or its JSON type and value (``string 'x'``)."""
    return "null" if value is None else f"{schema._type_name(value)} {schema._describe(value)}"


def is_int(v) -> bool:
    """Whether ``v`` is an integer and not a boolean."""
    return isinstance(v, int) and not isinstance(v, bool)


class LabelDecoder:
    """Maps the ``label`` of feedback items to the log's label by a dataset spec's task (one per request:
    values memoized).

    * binary: 0 / 1. 0 and 1 (integers) are always accepted as the class itself. Without a spec, or for a
      spec whose label is derived (``label.derive``: the data has no label column whose values a labeler
      would send), only they are.
    * regression: a finite JSON number, as a float (a string, even ``"3.5"``, a boolean, NaN or infinity is
      refused).
    * multiclass: one of the spec's classes as the data writes it (an integer class also as a whole number),
      mapped to its index in ``spec.classes`` (a class index itself is not a class: it is refused unless
      it is one of the classes).

    Args:
        spec: The :class:`kfloop.spec.DatasetSpec` of the served model, or None.
    """

    def __init__(self, spec=None):
        self.spec = spec
        self.task = spec.task.value if spec is not None else "binary"
        self._memo: dict = {}

    def __call__(self, value, where: str) -> int | float:
        """The log label of ``value`` (``where``: the item, e.g. ``feedback[3]``): binary 0/1, multiclass
        the class index, regression a float.

        Raises:
            serving.request.RequestError: 400 naming ``<where>.label``.
        """
        if self.task == "regression":
            return self._number(value, where)
        if self.task == "multiclass":
            return self._class(value, where)
        if is_int(value) and value in (0, 1):
            return value
        field = f"{where}.label"
        spec = self.spec
        if spec is None or spec.label_spec.derive is not None:
            raise schema.RequestError(
                f"{field}: expected the integer 0 or 1, got {schema._describe(value)}", field=field
            )
        key = (type(value), value) if isinstance(value, str | int | bool) else None
        if key is not None and key in self._memo:
            return self._memo[key]
        lab = spec.label_spec
        pos = lab.positive
        if isinstance(pos, str):
            if not isinstance(value, str):
                raise schema.RequestError(
                    f"{field}: expected a value of label {lab.column!r} (a string; {pos!r} is the positive "
                    f"class) or 0 / 1, got {_got(value)}",
                    field=field,
                )
            if value != pos and value.strip().casefold() == pos.strip().casefold():
                raise schema.RequestError(
                    f"{field}: {schema._describe(value)} is not the positive class {pos!r} (case or spaces "
                    "differ); refused rather than taken as 0",
                    field=field,
                )
        elif not is_int(value):
            raise schema.RequestError(
                f"{field}: expected an integer value of label {lab.column!r} ({pos} is the positive class), "
                f"got {_got(value)}",
                field=field,
            )
        try:
            out = int(spec.label_of(value))
        except ValueError as e:  # kfloop.spec.SpecDataError: missing, or not a class
            raise schema.RequestError(f"{field}: {e}", field=field) from None
        if key is not None:
            self._memo[key] = out
        return out

    def _number(self, value, where: str) -> float:
        field = f"{where}.label"
        lab = self.spec.label_spec
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise schema.RequestError(
                f"{field}: expected a number (label {lab.column!r}, task regression), got {_got(value)}",
                field=field,
            )
        try:
            return float(self.spec.label_of(value))
        except (ValueError, OverflowError) as e:  # kfloop.spec.SpecDataError: not finite
            raise schema.RequestError(f"{field}: {e}", field=field) from None

    def _class(self, value, where: str) -> int:
        field = f"{where}.label"
        key = (type(value), value) if isinstance(value, str | int | bool | float) else None
        if key is not None and key in self._memo:
            return self._memo[key]
        spec = self.spec
        ints = isinstance(spec.classes[0], int)
        want = "an integer class" if ints else "a string class"
        if isinstance(value, bool) or not isinstance(value, (int | float) if ints else str):
            raise schema.RequestError(
                f"{field}: expected {want} of label {spec.label_spec.column!r}, one of {list(spec.classes)} "
                f"(task multiclass), got {_got(value)}",
                field=field,
            )
        try:
            out = int(spec.label_of(value))
        except (ValueError, OverflowError) as e:  # kfloop.spec.SpecDataError: missing, or not a class
            raise schema.RequestError(f"{field}: {e}", field=field) from None
        if key is not None:
            self._memo[key] = out
        return out
