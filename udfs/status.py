"""Row statuses (what went wrong with one input, as data rather than a crash) and the errors behind them."""
from __future__ import annotations

OK = "ok"
EMPTY = "empty"                    # 0 bytes, null, empty or whitespace-only text
TOO_LARGE = "too_large"            # over max_bytes or max_pixels
DECODE_ERROR = "decode_error"      # not an image / truncated / text not valid in its encoding
READ_ERROR = "read_error"          # could not be read: missing, permission, a directory
NOT_AN_IMAGE = "not_an_image"      # in an image folder, but an image neither by name nor by content (a README)
MALFORMED = "malformed"            # a CSV row with the wrong number of fields or a broken quote, a JSON
                                   # line that is not an object
MISSING_ID = "missing_id"          # a null, empty or blank id: the row cannot be joined to anything
DUPLICATE_ID = "duplicate_id"      # a repeat of an earlier row's id: only the first row of an id is used
NO_KNOWN_WORDS = "no_known_words"  # no token the model knows (out of vocabulary / all [UNK])


class RowError(Exception):
    """One input's failure: becomes a row with `status` and `error`."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SpecError(ValueError):
    """A model spec that cannot be used, naming its field at fault (`model`, `precision`, `weights_path`,
    `model_path`, `vectors_path`): raised before any work; jobs report it as an error of that key."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
