"""Records: typed fields, coercion, validation, schema (:mod:`~streamnb.models.record`).

>>> from streamnb.models import Record
>>> class Point(Record):
...     x: int
>>> Point(x=1).x
1
"""

from .record import FieldDescriptor, Record

__all__ = ["FieldDescriptor", "Record"]
