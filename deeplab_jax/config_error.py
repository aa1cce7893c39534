"""The error for a config value that cannot work, written as one line a person can act on."""

from collections.abc import Callable
import functools
import sys
from typing import Any


def flag_value(value: Any) -> str:
  """`value` as a --config.<key>= override takes it (tuples quoted for the shell)."""
  if isinstance(value, (tuple, list)):
    return repr(str(tuple(value)))
  return str(value)


class ConfigError(ValueError):
  """config.<key>=<value>: why it cannot work; e.g. a value that works, as a flag."""

  def __init__(self, key: str, value: Any, why: str, works: Any = None):
    self.key = key
    value = tuple(value) if isinstance(value, list) else value
    suggestion = f'; e.g. --config.{key}={flag_value(works)}' if works is not None else ''
    super().__init__(f'config.{key}={value!r}: {why}{suggestion}')


def check_splits(key: str, value: int, parts: int, what: str) -> None:
  """Raises a ConfigError unless `value` (a batch size) splits evenly over `parts` `what`s."""
  if value < 1 or value % parts:
    raise ConfigError(key, value, f'does not split evenly over the {parts} {what}',
                      parts * max(1, round(value / parts)))


def one_line_errors(main: Callable[[list[str]], Any],
                    *errors: type[Exception]) -> Callable[[list[str]], Any]:
  """A command line tool's `main` that reports a ConfigError (exit status 2, usage's) and each
  of `errors` (exit status 1) as one line on stderr, instead of a traceback."""

  @functools.wraps(main)
  def checked_main(argv: list[str]) -> Any:
    try:
      return main(argv)
    except (ConfigError, *errors) as error:
      print(f'deeplab_jax: {error}', file=sys.stderr)
      sys.exit(2 if isinstance(error, ConfigError) else 1)

  return checked_main
