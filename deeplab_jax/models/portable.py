"""`portable.forms()`: within it, models trace only operations that other compilers convert.

Exports to LiteRT and ONNX trace the model under it. It keeps XLA's own convolution on every
platform (not the CPU's matmul forms, whose scatter-adds do not convert), and writes max pooling
as a maximum of shifted slices (ONNX's exporter makes every axis of `reduce_window` a pooled one).
"""

import contextlib
import contextvars

_ON = contextvars.ContextVar('portable_forms', default=False)


@contextlib.contextmanager
def forms():
  token = _ON.set(True)
  try:
    yield
  finally:
    _ON.reset(token)


def active() -> bool:
  return _ON.get()
