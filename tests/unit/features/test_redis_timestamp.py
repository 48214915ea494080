"""The event time Feast's Redis store keeps per view is read without protobuf's runtime."""

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from features.online import decode_seconds


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(1_767_225_600, 0), (1_767_225_600, 123_456_789), (5, 7), (0, 0)]
)
def test_the_seconds_of_a_serialised_timestamp(seconds, nanos):
    blob = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
    assert decode_seconds(blob) == seconds
