"""Which names of Faust's top-level ``__all__`` streamnb offers, and why the others are left out.

``import streamnb as faust`` then ``faust.X`` works for every name in
CLAIMED; NOT_SUPPORTED says what to use instead for the rest. The two lists
together are exactly Faust's ``__all__`` (faust-streaming 0.11, ``faust/__init__.py``).
"""

from __future__ import annotations

import importlib

import streamnb

FAUST_ALL = {
    "Agent", "App", "AppCommand", "Command", "Channel", "ChannelT", "Event", "EventT", "Model", "ModelOptions",
    "Record", "Monitor", "Schema", "Sensor", "SetTable", "SetGlobalTable", "Codec", "Service", "ServiceT",
    "Stream", "StreamT", "current_event", "Table", "GlobalTable", "Topic", "TopicT", "GSSAPICredentials",
    "SASLCredentials", "OAuthCredentials", "SSLCredentials", "Settings", "HoppingWindow", "TumblingWindow",
    "SlidingWindow", "Window", "Worker", "uuid",
}

CLAIMED = {
    "Agent", "App", "AppCommand", "Channel", "ChannelT", "Codec", "Event", "EventT", "GlobalTable",
    "HoppingWindow", "Model", "Record", "Service", "ServiceT", "SetGlobalTable", "SetTable", "Settings", "Stream",
    "StreamT", "Table",
    "Topic", "TopicT", "TumblingWindow", "Window", "current_event", "uuid",
}

NOT_SUPPORTED = {
    "Command": "class-based commands; decorate an async function with @app.command(...) instead",
    "ModelOptions": "Faust's internal model options; pass options as class keywords: class X(Record, coerce=True)",
    "Monitor": "no sensors; app.dashboard() and streamnb.testing.lag() show what an app does",
    "Sensor": "no sensors; app.dashboard() and streamnb.testing.lag() show what an app does",
    "Schema": "topics take key_type=, value_type= and serializers directly",
    "GSSAPICredentials": "pass security_protocol=, sasl_mechanism=, sasl_plain_username=, ... to App",
    "SASLCredentials": "pass security_protocol=, sasl_mechanism=, sasl_plain_username=, ... to App",
    "OAuthCredentials": "pass security_protocol=, sasl_mechanism=, sasl_plain_username=, ... to App",
    "SSLCredentials": "pass security_protocol='SSL' and ssl_context= to App",
    "SlidingWindow": "Faust's SlidingWindow(before, after) is not streamnb's: use Table.sliding(size) "
    "(Kafka Streams' sliding windows)",
    "Worker": "run a worker with app.main() or `streamnb -A module worker`",
}


def test_the_lists_cover_faust_all_exactly() -> None:
    assert CLAIMED | set(NOT_SUPPORTED) == FAUST_ALL
    assert not CLAIMED & set(NOT_SUPPORTED)


def test_every_claimed_name_is_importable_from_streamnb() -> None:
    faust = importlib.import_module("streamnb")
    for name in sorted(CLAIMED):
        assert name in streamnb.__all__, name
        assert getattr(faust, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from streamnb import {', '.join(sorted(CLAIMED))}", namespace)  # noqa: S102 - the import users write
    assert CLAIMED <= set(namespace)


def test_names_left_out_are_really_absent() -> None:
    for name in NOT_SUPPORTED:
        assert name not in streamnb.__all__, f"{name} is offered now: move it to CLAIMED"


def test_the_faust_names_behave_as_faust_programs_use_them() -> None:
    assert streamnb.StreamT is streamnb.Stream and streamnb.ChannelT is streamnb.Topic
    assert streamnb.Model is streamnb.Record and streamnb.Channel is streamnb.Topic
    assert streamnb.StreamT[int] is not None  # subscriptable in annotations, as StreamT[Order]
    assert streamnb.current_event() is None  # outside agents
    assert len(streamnb.uuid()) == 36
