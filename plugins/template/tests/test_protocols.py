"""The protocol: benchbase's conformance kit checks the contract; a test of its own checks the split."""

from benchbase.testing import SyntheticGraphs, check_protocol

from benchbase_example.protocols import Ordered


def test_ordered_conforms_to_the_protocol_contract():
    check_protocol(Ordered)


def test_ordered_tests_on_the_last_graphs():
    dataset = SyntheticGraphs(graphs=50)
    protocol = Ordered(test_fraction=0.2)
    split = protocol.split(dataset, protocol.task_of(dataset), seed=3)
    assert split["test"].tolist() == list(range(40, 50)) and split["train"].max() < split["valid"].min()
