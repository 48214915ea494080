"""The serving path's key encoding and value decoding agree with Feast's own."""

import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features.online import decode_value, entity_key


@pytest.mark.parametrize("entity_id", ["cus_0000042", "", "7590-VHVEG", "cellé_ü", "x" * 300])
def test_entity_key_matches_feast_serialisation(entity_id):
    expected = serialize_entity_key(
        EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=entity_id)]),
        entity_key_serialization_version=3,
    )
    assert entity_key("customer_id", entity_id) == expected


@pytest.mark.parametrize(
    "value",
    [Value(double_val=1.5), Value(double_val=-0.0), Value(double_val=1e300),
     Value(string_val="enterprise"), Value(string_val=""), Value(string_val="é" * 200), Value()],
)  # fmt: skip
def test_values_decode_as_feast_reads_them(value):
    kind = value.WhichOneof("val")
    expected = getattr(value, kind) if kind else None
    assert decode_value(value.SerializeToString()) == expected


def test_an_unsupported_encoding_is_named():
    with pytest.raises(ValueError, match="tag 0x20"):
        decode_value(Value(int64_val=3).SerializeToString())
