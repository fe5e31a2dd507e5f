"""Device Shadow over HTTP (boto3 `iot-data`): GetThingShadow, UpdateThingShadow,
DeleteThingShadow (classic and `?name=` named shadows) and ListNamedShadowsForThing,
with the exact documents and errors of AWS IoT Core (reference section 4,
crates/shadow/tests/golden/NOTES.md), durability across a restart and no lost update
under concurrency."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from iot_helpers import aws_error, check_aws_error
from shadow_helpers import (
    assert_document,
    leaf_meta,
    nested,
    new_client,
    payload_of,
    unique_thing,
)

# iot-data error statuses (reference section 0)
STATUS = {
    "InvalidRequestException": 400,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "RequestEntityTooLargeException": 413,
    "UnsupportedDocumentEncodingException": 415,
}


def data_error(code: str):
    return aws_error(code, STATUS[code])


@pytest.fixture
def data(client_factory):
    return client_factory("iot-data")


@pytest.fixture
def raw_data(server):
    """An iot-data client without botocore's parameter validation, so the server sees
    values the model would refuse locally."""
    return new_client(server, "iot-data", validate=False)


@pytest.fixture
def thing(iot):
    name = unique_thing()
    iot.create_thing(thingName=name)
    return name


def update(data, thing: str, document, shadow: str | None = None) -> bytes:
    body = document if isinstance(document, (bytes, str)) else json.dumps(document)
    kwargs = {"shadowName": shadow} if shadow else {}
    return payload_of(data.update_thing_shadow(thingName=thing, payload=body, **kwargs))


def get(data, thing: str, shadow: str | None = None) -> bytes:
    kwargs = {"shadowName": shadow} if shadow else {}
    return payload_of(data.get_thing_shadow(thingName=thing, **kwargs))


def get_json(data, thing: str, shadow: str | None = None) -> dict:
    return json.loads(get(data, thing, shadow))


def delete(data, thing: str, shadow: str | None = None) -> bytes:
    kwargs = {"shadowName": shadow} if shadow else {}
    return payload_of(data.delete_thing_shadow(thingName=thing, **kwargs))


def message(excinfo) -> str:
    return excinfo.value.response["Error"]["Message"]


# --------------------------------------------------------------------------------------
# missing things and shadows
# --------------------------------------------------------------------------------------


def test_get_of_a_shadow_never_written_is_404_with_awss_message(data, thing):
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing)
    assert message(err) == f"No shadow exists with name: '{thing}'"
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing, shadowName="config")
    assert message(err) == "No shadow exists with name: 'config'"
    with data_error("ResourceNotFoundException") as err:
        data.delete_thing_shadow(thingName=thing)
    assert message(err) == f"No shadow exists with name: '{thing}'"
    with data_error("ResourceNotFoundException") as err:
        data.delete_thing_shadow(thingName=thing, shadowName="config")
    assert message(err) == "No shadow exists with name: 'config'"


@pytest.mark.parametrize("shadow", [None, "config"], ids=["classic", "named"])
def test_every_operation_on_an_unknown_thing_is_404_thing_not_found(data, shadow):
    ghost = unique_thing("ghost")
    named = {"shadowName": shadow} if shadow else {}
    calls = [
        lambda: data.get_thing_shadow(thingName=ghost, **named),
        lambda: data.update_thing_shadow(thingName=ghost, payload=b'{"state":{"reported":{"a":1}}}', **named),
        lambda: data.delete_thing_shadow(thingName=ghost, **named),
        lambda: data.list_named_shadows_for_thing(thingName=ghost),
    ]
    for call in calls:
        with data_error("ResourceNotFoundException") as err:
            call()
        assert message(err) == "Thing not found"


# --------------------------------------------------------------------------------------
# documents
# --------------------------------------------------------------------------------------


def test_update_get_delete_round_trip_with_exact_documents(data, thing):
    reported = {"temperature": 21, "colors": [1, 2, 3], "engine": {"rpm": 900}}
    accepted = update(data, thing, {"state": {"reported": reported}, "clientToken": "token-1"})
    first = assert_document(
        accepted,
        {
            "state": {"reported": reported},
            "metadata": {"reported": leaf_meta(reported)},
            "version": 1,
            "timestamp": 0,
            "clientToken": "token-1",
        },
        "update/accepted (HTTP answer)",
    )

    desired = {"temperature": 25, "engine": {"rpm": 900, "mode": "eco"}, "fan": "auto"}
    second = assert_document(
        update(data, thing, {"state": {"desired": desired}}),
        {"state": {"desired": desired}, "metadata": {"desired": leaf_meta(desired)}, "version": 2, "timestamp": 0},
        "second update/accepted",
    )

    # GET: desired before reported, the delta holds only differing desired leaves with
    # their full path; metadata keeps the timestamp each leaf was written at
    raw = get(data, thing)
    document = assert_document(
        raw,
        {
            "state": {
                "desired": desired,
                "reported": reported,
                "delta": {"temperature": 25, "engine": {"mode": "eco"}, "fan": "auto"},
            },
            "metadata": {"desired": leaf_meta(desired), "reported": leaf_meta(reported)},
            "version": 2,
            "timestamp": 0,
        },
        "GetThingShadow",
    )
    assert document["metadata"]["reported"]["temperature"]["timestamp"] == first["timestamp"]
    assert document["metadata"]["reported"]["colors"] == [{"timestamp": first["timestamp"]}] * 3
    assert document["metadata"]["desired"]["fan"]["timestamp"] == second["timestamp"]
    assert document["timestamp"] >= second["timestamp"]

    # the device catches up: no delta key at all
    update(data, thing, {"state": {"reported": {"temperature": 25, "engine": {"mode": "eco"}, "fan": "auto"}}})
    document = get_json(data, thing)
    assert "delta" not in document["state"]
    assert document["version"] == 3

    deleted = assert_document(delete(data, thing), {"version": 3, "timestamp": 0}, "DeleteThingShadow")
    assert deleted["version"] == 3
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing)
    assert message(err) == f"No shadow exists with name: '{thing}'"
    with data_error("ResourceNotFoundException"):
        data.delete_thing_shadow(thingName=thing)

    # delete keeps the version counter: the next update continues at 4
    again = json.loads(update(data, thing, {"state": {"desired": {"x": 1}}}))
    assert again["version"] == 4
    assert_document(
        get(data, thing),
        {
            "state": {"desired": {"x": 1}, "delta": {"x": 1}},
            "metadata": {"desired": {"x": {"timestamp": 0}}},
            "version": 4,
            "timestamp": 0,
        },
        "GET of the re-created shadow (nothing of the deleted one is left)",
    )


def test_accepted_echoes_only_the_request_in_its_order_and_get_orders_desired_first(data, thing):
    update(data, thing, {"state": {"desired": {"keep": 1, "drop": 2}, "reported": {"keep": 1}}})
    request = {"state": {"reported": {"b": {"c": 1}}, "desired": {"drop": None, "new": [1, 2]}}, "clientToken": "ord"}
    assert_document(
        update(data, thing, request),
        {
            "state": {"reported": {"b": {"c": 1}}, "desired": {"drop": None, "new": [1, 2]}},
            "metadata": {
                "reported": {"b": {"c": {"timestamp": 0}}},
                "desired": {"drop": {"timestamp": 0}, "new": [{"timestamp": 0}, {"timestamp": 0}]},
            },
            "version": 2,
            "timestamp": 0,
            "clientToken": "ord",
        },
        "update/accepted echoes the request's state (sections in request order, nulls included)",
    )
    assert_document(
        get(data, thing),
        {
            "state": {
                "desired": {"keep": 1, "new": [1, 2]},
                "reported": {"keep": 1, "b": {"c": 1}},
                "delta": {"new": [1, 2]},
            },
            "metadata": {
                "desired": {"keep": {"timestamp": 0}, "new": [{"timestamp": 0}, {"timestamp": 0}]},
                "reported": {"keep": {"timestamp": 0}, "b": {"c": {"timestamp": 0}}},
            },
            "version": 2,
            "timestamp": 0,
        },
        "GET after the update",
    )


def test_merge_rules(data, thing):
    update(data, thing, {"state": {"reported": {"color": {"r": 255, "g": 255, "b": 0}, "list": [1, 2, 3], "gone": 1}}})
    # partial deep merge, arrays replaced whole, null deletes, an object emptied disappears
    update(data, thing, {"state": {"reported": {"color": {"r": 10}, "engine": "ON", "list": [9], "gone": None}}})
    assert get_json(data, thing)["state"] == {
        "reported": {"color": {"r": 10, "g": 255, "b": 0}, "list": [9], "engine": "ON"}
    }
    update(data, thing, {"state": {"reported": {"color": {"r": None, "g": None, "b": None}}}})
    document = get_json(data, thing)
    assert document["state"] == {"reported": {"list": [9], "engine": "ON"}}
    assert "color" not in document["metadata"]["reported"], "metadata of removed keys goes with them"

    # arrays are compared whole: a differing desired array is in the delta in full
    update(data, thing, {"state": {"desired": {"list": [9, 8], "engine": "ON"}}})
    assert get_json(data, thing)["state"]["delta"] == {"list": [9, 8]}
    update(data, thing, {"state": {"desired": {"list": [9]}}})
    assert "delta" not in get_json(data, thing)["state"]
    update(data, thing, {"state": {"desired": None}})

    # other top-level keys are ignored, not stored
    accepted = json.loads(update(data, thing, {"state": {"desired": {"engine": "OFF"}}, "extra": {"x": 1}}))
    assert "extra" not in accepted
    assert "extra" not in get_json(data, thing)

    # "desired": null removes the section; both can be done in one update
    update(data, thing, {"state": {"desired": None, "reported": {"engine": None}}})
    document = get_json(data, thing)
    assert document["state"] == {"reported": {"list": [9]}}
    assert document["metadata"] == {"reported": {"list": [{"timestamp": document["metadata"]["reported"]["list"][0]["timestamp"]}]}}

    # "state": null clears everything but the shadow still exists and keeps counting
    version = document["version"]
    cleared = json.loads(update(data, thing, {"state": None}))
    assert cleared["version"] == version + 1
    document = get_json(data, thing)
    assert document["state"] == {} and document["metadata"] == {}
    assert document["version"] == version + 1


def test_client_token_limit_counts_bytes(data, thing):
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 1}}, "clientToken": "t" * 64}))["clientToken"] == "t" * 64
    two_byte = "é" * 32  # 32 characters, 64 bytes
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 2}}, "clientToken": two_byte}))["clientToken"] == two_byte
    for token in ("t" * 65, "é" * 33):  # 65 and 66 bytes
        with data_error("InvalidRequestException") as err:
            update(data, thing, {"state": {"reported": {"a": 3}}, "clientToken": token})
        assert message(err) == "Invalid clientToken"
    assert get_json(data, thing)["version"] == 2


# --------------------------------------------------------------------------------------
# named shadows
# --------------------------------------------------------------------------------------


def test_named_shadows_are_independent_of_the_classic_one(data, thing):
    desired = {"interval": 30}
    assert_document(
        update(data, thing, {"state": {"desired": desired}, "clientToken": "n1"}, shadow="config"),
        {"state": {"desired": desired}, "metadata": {"desired": leaf_meta(desired)}, "version": 1, "timestamp": 0, "clientToken": "n1"},
        "named update/accepted",
    )
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing)
    assert message(err) == f"No shadow exists with name: '{thing}'", "the classic shadow was not created"
    update(data, thing, {"state": {"reported": {"interval": 60}}})  # classic
    update(data, thing, {"state": {"reported": {"interval": 30}}}, shadow="config")

    assert_document(
        get(data, thing, "config"),
        {
            "state": {"desired": {"interval": 30}, "reported": {"interval": 30}},
            "metadata": {"desired": {"interval": {"timestamp": 0}}, "reported": {"interval": {"timestamp": 0}}},
            "version": 2,
            "timestamp": 0,
        },
        "named GET",
    )
    assert get_json(data, thing)["state"] == {"reported": {"interval": 60}}
    assert get_json(data, thing)["version"] == 1

    assert_document(delete(data, thing, "config"), {"version": 2, "timestamp": 0}, "named delete")
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing, shadowName="config")
    assert message(err) == "No shadow exists with name: 'config'"
    assert get_json(data, thing)["version"] == 1, "the classic shadow is untouched"
    assert json.loads(update(data, thing, {"state": {"reported": {"x": 1}}}, shadow="config"))["version"] == 3


def test_shadow_names_are_validated(raw_data, thing):
    for bad in ("with space", "slash/inside", "x" * 65):
        with data_error("InvalidRequestException"):
            raw_data.update_thing_shadow(thingName=thing, shadowName=bad, payload=b'{"state":{"reported":{"a":1}}}')
    # AWS allows '$' and ':' in shadow names
    for good in ("$config", "a:b_c-d", "x" * 64):
        update(raw_data, thing, {"state": {"reported": {"a": 1}}}, shadow=good)
        assert get_json(raw_data, thing, good)["version"] == 1


def test_list_named_shadows_pages_and_omits_deleted_and_classic(iot, data, raw_data, thing):
    names = ["delta-7", "alpha", "$dollar", "golf", "charlie", "echo", "bravo", "foxtrot"]
    for name in names:
        update(data, thing, {"state": {"reported": {"n": name}}}, shadow=name)
    update(data, thing, {"state": {"reported": {"classic": True}}})
    delete(data, thing, "charlie")
    delete(data, thing, "golf")
    # a thing whose name extends this one's must not leak into the listing
    neighbour = f"{thing}-2"
    iot.create_thing(thingName=neighbour)
    update(data, neighbour, {"state": {"reported": {"n": 1}}}, shadow="zulu")
    expected = sorted(set(names) - {"charlie", "golf"})

    everything = data.list_named_shadows_for_thing(thingName=thing)
    assert sorted(everything["results"]) == expected
    assert "nextToken" not in everything
    assert isinstance(everything["timestamp"], int)

    seen, sizes, token = [], [], None
    for _ in range(20):
        page = data.list_named_shadows_for_thing(thingName=thing, pageSize=4, **({"nextToken": token} if token else {}))
        assert len(page["results"]) <= 4
        seen.extend(page["results"])
        sizes.append(len(page["results"]))
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == expected and len(seen) == len(set(seen)), f"pages {sizes}: {seen}"
    assert sizes[:-1] == [4] * (len(sizes) - 1) and sum(sizes) == 6

    single = data.list_named_shadows_for_thing(thingName=thing, pageSize=100)
    assert sorted(single["results"]) == expected and "nextToken" not in single

    for bad in (0, 101, -1):
        with data_error("InvalidRequestException"):
            raw_data.list_named_shadows_for_thing(thingName=thing, pageSize=bad)

    assert data.list_named_shadows_for_thing(thingName=neighbour)["results"] == ["zulu"]
    other = unique_thing()
    iot.create_thing(thingName=other)
    empty = data.list_named_shadows_for_thing(thingName=other)
    assert empty["results"] == [] and "nextToken" not in empty


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


def test_version_conflict_is_409_and_changes_nothing(data, thing):
    update(data, thing, {"state": {"reported": {"a": 1}}})
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 2}}, "version": 1}))["version"] == 2
    for stale in (1, 3, 0):
        with data_error("ConflictException") as err:
            update(data, thing, {"state": {"reported": {"a": 99}}, "version": stale, "clientToken": "c"})
        assert message(err) == "Version conflict"
    document = get_json(data, thing)
    assert document["version"] == 2 and document["state"] == {"reported": {"a": 2}}
    # without a version there is no check
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 3}}}))["version"] == 3


INVALID_DOCUMENTS = [
    (b"not json", "Invalid JSON"),
    (b'{"state": {"reported": {"a": 1}}', "Invalid JSON"),
    (b"[1, 2]", "Invalid JSON"),
    (b"{}", "Missing required node: state"),
    (b'{"clientToken": "x"}', "Missing required node: state"),
    (b'{"state": 5}', "State node must be an object"),
    (b'{"state": "on"}', "State node must be an object"),
    (b'{"state": {"desired": 1}}', "Desired node must be an object"),
    (b'{"state": {"desired": [1]}}', "Desired node must be an object"),
    (b'{"state": {"reported": "x"}}', "Reported node must be an object"),
    (b'{"state": {"reported": true}}', "Reported node must be an object"),
    (b'{"state": {"desired": {"a": 1}}, "version": "1"}', "Invalid version"),
    (b'{"state": {"desired": {"a": 1}}, "version": 1.5}', "Invalid version"),
    (b'{"state": {"desired": {"a": 1}}, "version": -1}', "Invalid version"),
    (b'{"state": {"desired": {"a": 1}}, "clientToken": 5}', "Invalid clientToken"),
    (b'{"state": {"delta": {"a": 1}}}', "State contains an invalid node"),
    (b'{"state": {"desired": {"a": 1}, "metadata": {}}}', "State contains an invalid node"),
]


@pytest.mark.parametrize("payload,text", INVALID_DOCUMENTS, ids=[f"{i}-{t}" for i, (_, t) in enumerate(INVALID_DOCUMENTS)])
def test_invalid_documents_are_400(data, thing, payload, text):
    update(data, thing, {"state": {"reported": {"before": 1}}})
    with data_error("InvalidRequestException") as err:
        update(data, thing, payload)
    assert message(err) == text
    document = get_json(data, thing)
    assert document["version"] == 1 and document["state"] == {"reported": {"before": 1}}


def test_null_inside_an_array_is_refused(data, thing):
    with data_error("InvalidRequestException"):
        update(data, thing, {"state": {"desired": {"list": [1, None, 3]}}})
    with data_error("ResourceNotFoundException"):
        data.get_thing_shadow(thingName=thing)


def test_nesting_depth(data, thing):
    # AWS: 8 levels in desired/reported, counted as nested keys below the section (the
    # legacy limits page counts 'desired': {one:{two:{three:{four:{five:...}}}}} as 5).
    # nested(8) has 8 keys on its path: accepted; 9 and 10 are refused with AWS's text
    # (which still says 6).
    update(data, thing, {"state": {"desired": nested(8)}})
    update(data, thing, {"state": {"reported": nested(8, leaf="x")}})
    for section in ("desired", "reported"):
        for levels in (9, 10):
            with data_error("InvalidRequestException") as err:
                update(data, thing, {"state": {section: nested(levels)}})
            assert message(err) == "JSON contains too many levels of nesting; maximum is 6"
    assert get_json(data, thing)["version"] == 2


def test_state_over_8kb_is_413_and_metadata_does_not_count(data, thing):
    with data_error("RequestEntityTooLargeException") as err:
        update(data, thing, {"state": {"desired": {"blob": "x" * 9000}}})
    assert message(err) == "The payload exceeds the maximum size allowed"
    with data_error("ResourceNotFoundException"):
        data.get_thing_shadow(thingName=thing)

    # desired and reported count together, across updates
    update(data, thing, {"state": {"desired": {"blob": "d" * 4500}}})
    with data_error("RequestEntityTooLargeException"):
        update(data, thing, {"state": {"reported": {"blob": "r" * 4500}}})
    assert get_json(data, thing)["version"] == 1
    update(data, thing, {"state": {"desired": None}})
    update(data, thing, {"state": {"reported": {"blob": "r" * 4500}}})

    # ~6.5 KB of state in 600 leaves has far more than 8 KB of metadata: accepted
    many = {f"k{i:03d}": i for i in range(600)}
    assert len(json.dumps(many, separators=(",", ":"))) < 8000
    update(data, thing, {"state": {"reported": many}}, shadow="many")
    document = get(data, thing, "many")
    assert len(document) > 8192 * 2
    assert json.loads(document)["state"]["reported"] == many


def test_non_utf8_documents_are_415(data, thing):
    for payload in (b'{"state":{"reported":{"a":"\xff\xfe"}}}', "{\"state\":{\"reported\":{\"a\":\"é\"}}}".encode("latin-1")):
        with data_error("UnsupportedDocumentEncodingException") as err:
            update(data, thing, payload)
        assert message(err) == "Unsupported documented encoding; supported encoding is UTF-8"
    with data_error("ResourceNotFoundException"):
        data.get_thing_shadow(thingName=thing)
    # UTF-8 text outside ASCII is fine
    assert json.loads(update(data, thing, {"state": {"reported": {"name": "Zürich ☃"}}}))["state"]["reported"]["name"] == "Zürich ☃"


# --------------------------------------------------------------------------------------
# lifetime
# --------------------------------------------------------------------------------------


def test_deleting_the_thing_removes_its_shadows(iot, data, thing):
    update(data, thing, {"state": {"reported": {"a": 1}}})
    update(data, thing, {"state": {"reported": {"a": 2}}})
    update(data, thing, {"state": {"desired": {"b": 1}}}, shadow="config")
    iot.delete_thing(thingName=thing)
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing)
    assert message(err) == "Thing not found"

    iot.create_thing(thingName=thing)
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing)
    assert message(err) == f"No shadow exists with name: '{thing}'"
    with data_error("ResourceNotFoundException") as err:
        data.get_thing_shadow(thingName=thing, shadowName="config")
    assert message(err) == "No shadow exists with name: 'config'"
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == []
    # a new thing's shadow starts over
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 1}}}))["version"] == 1
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 1}}}, shadow="config"))["version"] == 1


@pytest.mark.restart
def test_shadows_survive_a_restart(iot, data, server, thing):
    if not getattr(server, "can_restart", True):
        pytest.skip("the server was not started by the tests")
    update(data, thing, {"state": {"reported": {"a": 1, "list": [1, 2]}}})
    update(data, thing, {"state": {"desired": {"a": 2}}})
    update(data, thing, {"state": {"desired": {"mode": "x"}}}, shadow="config")
    for _ in range(3):
        update(data, thing, {"state": {"reported": {"n": 1}}}, shadow="old")
    delete(data, thing, "old")
    before = {shadow: json.loads(get(data, thing, shadow)) for shadow in (None, "config")}

    server.restart()
    data = new_client(server, "iot-data")
    for shadow, document in before.items():
        after = json.loads(get(data, thing, shadow))
        after.pop("timestamp"), document.pop("timestamp")
        assert after == document, f"shadow {shadow or 'classic'} changed across the restart"
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == ["config"]
    with data_error("ResourceNotFoundException"):
        data.get_thing_shadow(thingName=thing, shadowName="old")
    assert json.loads(update(data, thing, {"state": {"reported": {"n": 2}}}, shadow="old"))["version"] == 4
    assert json.loads(update(data, thing, {"state": {"reported": {"a": 2}}}))["version"] == 3


# --------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------

THREADS = 16
UPDATES = 20


def _run_threads(work, count: int = THREADS):
    barrier = threading.Barrier(count)

    def start(index):
        barrier.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


def test_concurrent_updates_of_one_shadow_lose_nothing(server, thing):
    def writer(index):
        client = new_client(server, "iot-data")
        versions = []
        for n in range(UPDATES):
            body = {"state": {"reported": {f"w{index:02d}_{n:02d}": n}}, "clientToken": f"{index}-{n}"}
            accepted = json.loads(update(client, thing, body))
            assert accepted["clientToken"] == f"{index}-{n}"
            assert accepted["state"] == body["state"]
            versions.append(accepted["version"])
        return versions

    results = _run_threads(writer)
    total = THREADS * UPDATES
    versions = [v for per_thread in results for v in per_thread]
    assert sorted(versions) == list(range(1, total + 1)), "every accepted update got its own version"
    for per_thread in results:
        assert per_thread == sorted(per_thread), "one writer's versions increase"
    document = get_json(new_client(server, "iot-data"), thing)
    assert document["version"] == total
    expected = {f"w{i:02d}_{n:02d}": n for i in range(THREADS) for n in range(UPDATES)}
    assert document["state"]["reported"] == expected
    assert set(document["metadata"]["reported"]) == set(expected)


def test_concurrent_updates_of_many_things_and_shadows_lose_nothing(iot, server):
    things = [unique_thing("conc") for _ in range(THREADS)]
    for name in things:
        iot.create_thing(thingName=name)

    def writer(index):
        client = new_client(server, "iot-data")
        for n in range(UPDATES):
            update(client, things[index], {"state": {"desired": {f"k{n:02d}": index}}})
            # every thread also writes the neighbour's named shadow
            update(client, things[(index + 1) % THREADS], {"state": {"reported": {f"from{index:02d}_{n:02d}": n}}}, shadow="shared")

    _run_threads(writer)
    client = new_client(server, "iot-data")
    for index, name in enumerate(things):
        classic = get_json(client, name)
        assert classic["version"] == UPDATES
        assert classic["state"]["desired"] == {f"k{n:02d}": index for n in range(UPDATES)}
        shared = get_json(client, name, "shared")
        writer = (index - 1) % THREADS
        assert shared["version"] == UPDATES
        assert shared["state"]["reported"] == {f"from{writer:02d}_{n:02d}": n for n in range(UPDATES)}


def test_optimistic_locking_with_retries_counts_exactly(server, data, thing):
    update(data, thing, {"state": {"reported": {"counter": 0}}})
    increments = 10
    threads = 8

    def incrementer(index):
        client = new_client(server, "iot-data")
        conflicts = 0
        for _ in range(increments):
            for _attempt in range(1000):
                current = get_json(client, thing)
                body = {"state": {"reported": {"counter": current["state"]["reported"]["counter"] + 1}}, "version": current["version"]}
                try:
                    accepted = json.loads(update(client, thing, body))
                    assert accepted["version"] == current["version"] + 1
                    break
                except ClientError as err:
                    check_aws_error(err, "ConflictException", 409)
                    assert err.response["Error"]["Message"] == "Version conflict"
                    conflicts += 1
            else:
                raise AssertionError("an increment never got through")
        return conflicts

    conflicts = _run_threads(incrementer, threads)
    document = get_json(data, thing)
    assert document["state"]["reported"]["counter"] == threads * increments, f"{sum(conflicts)} conflicts retried"
    assert document["version"] == threads * increments + 1
