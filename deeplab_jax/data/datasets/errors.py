"""The error for a malformed dataset file, raised while a builder reads it."""


class DataError(ValueError):
  """A dataset file is missing its pair, unreadable, or holds bad labels; the message names it."""
