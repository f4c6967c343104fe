"""SimpleRPC status codes, numbered exactly as MCollective numbers them."""

from enum import IntEnum


class Status(IntEnum):
    """The statuscode of a Reply; 0 is success, everything else is a failure."""

    OK = 0
    ABORTED = 1
    UNKNOWN_ACTION = 2
    MISSING_DATA = 3
    INVALID_DATA = 4
    UNKNOWN_ERROR = 5
