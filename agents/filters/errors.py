"""The one exception every filter failure becomes."""


class FilterSyntaxError(ValueError):
    """A filter that cannot be parsed or is unsafe to run; ``column`` is 1-based or None."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
