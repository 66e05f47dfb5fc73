from kfloop import features as F


def test_feature_facts_are_consistent():
    names = [f.name for f in F.MODEL_FEATURES]
    assert len(names) == len(set(names))
    assert F.TIPS not in names and F.EVENT_TIME.name not in names and F.LABEL.name not in names
    assert F.DATASET_COLUMNS[0] == F.EVENT_TIME.name and F.DATASET_COLUMNS[-1] == F.LABEL.name
    assert {f.v2_datatype for f in F.MODEL_FEATURES} == {"FP32", "INT64", "BYTES"}
    assert F.feature("payment_type").kind is F.Kind.CATEGORICAL_STR
    assert F.features_of(F.Kind.NUMERIC)[0].name == "trip_miles"


def test_unknown_feature_is_a_clear_key_error():
    import pytest

    with pytest.raises(KeyError, match="unknown feature 'nope'"):
        F.feature("nope")
