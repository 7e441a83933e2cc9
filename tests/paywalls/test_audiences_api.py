"""Audiences through the API: both filter forms, filter errors naming the path, frequency caps,
the inline experiment created atomically, paywall references, update rules and reorder."""

from __future__ import annotations

from typing import Any

import pytest

from tests.paywalls.conftest import Api

SEED_FILTERS = [
    {"field": "device.platform", "operator": "is", "value": "ios"},
    {"field": "device.session_count", "operator": "gte", "value": 5, "conjunction": "and"},
    {"field": "user.subscription_status", "operator": "is", "value": "free", "conjunction": "and"},
]
CANONICAL = {
    "all": [
        {"field": "device.platform", "operator": "is", "value": "ios"},
        {
            "any": [
                {"field": "user.plan", "operator": "is", "value": "free"},
                {"field": "user.ltv", "operator": "gt", "value": 100},
            ]
        },
    ]
}


@pytest.fixture
def cid(api: Api) -> str:
    api.paywall("pw_original")
    api.paywall("pw_new_design")
    return api.campaign()


@pytest.mark.parametrize(
    "filters", [SEED_FILTERS, CANONICAL, [], {}], ids=["flat", "tree", "empty-list", "empty-tree"]
)
def test_create_audience__both_filter_forms__stored_as_given(api: Api, cid: str, filters: Any) -> None:
    body = api.audience(cid, name="a", filters=filters, paywall_id="pw_original")
    assert body["filters"] == filters
    assert body["id"].startswith("aud_") and body["priority"] == 0
    assert body["entitlement_check"] is None and body["frequency_cap"] is None and body["experiment"] is None


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (
            [
                {"field": "user.plan", "operator": "is", "value": "x"},
                {"field": "user.a", "operator": "is", "value": 1},
                {"field": "user.b", "operator": "equals", "value": 1},
            ],
            "filters[2].operator",
        ),
        (
            [{"field": "user.plan", "operator": "is", "value": "x", "conjunction": "xor"}],
            "filters[0].conjunction",
        ),
        ([{"field": "plan", "operator": "is", "value": "x"}], "filters[0].field"),
        ([{"field": "profile.plan", "operator": "is", "value": "x"}], "filters[0].field"),
        ([{"field": "user.plan; drop", "operator": "is", "value": "x"}], "filters[0].field"),
        ([{"field": "user.n", "operator": "gt", "value": [1]}], "filters[0].value"),
        ([{"field": "user.n", "operator": "in", "value": 3}], "filters[0].value"),
        ([{"event": "purchase", "count": {"gte": 1}}], "filters"),
        ("user.plan is free", "filters"),
    ],
)
def test_create_audience__bad_filters__422_naming_the_path(
    api: Api, cid: str, filters: Any, field: str
) -> None:
    r = api.post(f"campaigns/{cid}/audiences", {"name": "a", "filters": filters})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body.get("field", body.get("errors", [{}])[0].get("field")) == field
    assert api.get(f"campaigns/{cid}/audiences").json() == []


def test_create_audience__filters_missing__422(api: Api, cid: str) -> None:
    r = api.post(f"campaigns/{cid}/audiences", {"name": "a"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "filters"


@pytest.mark.parametrize(
    "cap", ["once_per_session", "once_per_day", "1_times_total", "3_times_total", "1000_times_total"]
)
def test_create_audience__valid_frequency_caps__stored(api: Api, cid: str, cap: str) -> None:
    assert api.audience(cid, frequency_cap=cap)["frequency_cap"] == cap


@pytest.mark.parametrize(
    "cap",
    [
        "once_per_week",
        "0_times_total",
        "3_times",
        "-1_times_total",
        "N_times_total",
        "03_times_total",
        "2_TIMES_TOTAL",
        "",
    ],
)
def test_create_audience__bad_frequency_cap__422(api: Api, cid: str, cap: str) -> None:
    r = api.post(f"campaigns/{cid}/audiences", {"name": "a", "filters": [], "frequency_cap": cap})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "frequency_cap"


def test_create_audience__inline_experiment__defaults_and_ids(api: Api, cid: str) -> None:
    body = api.audience(
        cid,
        experiment={
            "variants": [
                {"paywall_id": "pw_original", "traffic_percentage": 30},
                {"paywall_id": "pw_new_design", "traffic_percentage": 50},
            ]
        },
    )
    exp = body["experiment"]
    assert exp["id"].startswith("exp_") and all(v["id"].startswith("var_") for v in exp["variants"])
    assert (exp["confidence_threshold"], exp["auto_promote"], exp["state"]) == (0.95, False, "running")
    assert exp["holdout_percentage"] == 20


@pytest.mark.parametrize(
    ("experiment", "field"),
    [
        (
            {
                "variants": [
                    {"paywall_id": "pw_original", "traffic_percentage": 60},
                    {"paywall_id": "pw_new_design", "traffic_percentage": 50},
                ]
            },
            "experiment.variants",
        ),
        (
            {
                "variants": [
                    {"paywall_id": "pw_original", "traffic_percentage": 50},
                    {"paywall_id": "pw_missing", "traffic_percentage": 50},
                ]
            },
            "experiment.variants[1].paywall_id",
        ),
        ({"variants": []}, "experiment.variants"),
        (
            {"variants": [{"paywall_id": "pw_original", "traffic_percentage": -5}]},
            "experiment.variants[0].traffic_percentage",
        ),
        (
            {
                "variants": [{"paywall_id": "pw_original", "traffic_percentage": 50}],
                "confidence_threshold": 1.5,
            },
            "experiment.confidence_threshold",
        ),
        (
            {
                "variants": [{"paywall_id": "pw_original", "traffic_percentage": 50}],
                "auto_promote": "sometimes",
            },
            "experiment.auto_promote",
        ),
        (
            {"variants": [{"paywall_id": "pw_original", "percentage": 50}]},
            "experiment.variants[0].traffic_percentage",
        ),
    ],
)
def test_create_audience__bad_experiment__422_and_nothing_created(
    api: Api, cid: str, experiment: dict[str, Any], field: str
) -> None:
    r = api.post(f"campaigns/{cid}/audiences", {"name": "a", "filters": [], "experiment": experiment})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body.get("field", body.get("errors", [{}])[0].get("field")) == field
    assert api.get(f"campaigns/{cid}/audiences").json() == []


def test_create_audience__unknown_paywall__422(api: Api, cid: str) -> None:
    r = api.post(f"campaigns/{cid}/audiences", {"name": "a", "filters": [], "paywall_id": "pw_nope"})
    assert r.status_code == 422 and r.json()["field"] == "paywall_id"


def test_create_audience__paywall_and_experiment__422(api: Api, cid: str) -> None:
    r = api.post(
        f"campaigns/{cid}/audiences",
        {
            "name": "a",
            "filters": [],
            "paywall_id": "pw_original",
            "experiment": {"variants": [{"paywall_id": "pw_new_design", "traffic_percentage": 100}]},
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "paywall_id"


def test_update_audience__fields_and_nulls(api: Api, cid: str) -> None:
    aud = api.audience(cid, paywall_id="pw_original", entitlement_check="pro", frequency_cap="once_per_day")
    url = f"campaigns/{cid}/audiences/{aud['id']}"
    r = api.put(url, {"name": "renamed", "filters": SEED_FILTERS, "frequency_cap": None})
    assert r.status_code == 200
    body = r.json()
    assert (body["name"], body["filters"], body["frequency_cap"]) == ("renamed", SEED_FILTERS, None)
    assert body["entitlement_check"] == "pro" and body["paywall_id"] == "pw_original"
    assert (
        api.put(url, {"filters": [{"field": "user.x", "operator": "nope"}]}).json()["field"]
        == "filters[0].operator"
    )
    assert api.put(url, {"frequency_cap": "daily"}).status_code == 422
    assert api.put(url, {"paywall_id": "pw_missing"}).status_code == 422
    assert api.get(url).json()["name"] == "renamed"


def test_update_audience__switch_paywall_to_experiment_and_back(api: Api, cid: str) -> None:
    aud = api.audience(cid, paywall_id="pw_original")
    url = f"campaigns/{cid}/audiences/{aud['id']}"
    experiment = {
        "variants": [
            {"paywall_id": "pw_original", "traffic_percentage": 50},
            {"paywall_id": "pw_new_design", "traffic_percentage": 50},
        ]
    }
    assert api.put(url, {"experiment": experiment}).status_code == 422  # still has paywall_id
    r = api.put(url, {"paywall_id": None, "experiment": experiment})
    assert r.status_code == 200 and r.json()["experiment"]["state"] == "running"
    exp_id = r.json()["experiment"]["id"]
    # Same variants, new settings: updated in place.
    r = api.put(url, {"experiment": {**experiment, "auto_promote": True, "confidence_threshold": 0.99}})
    assert r.json()["experiment"]["id"] == exp_id and r.json()["experiment"]["auto_promote"] is True
    r = api.put(url, {"experiment": None, "paywall_id": "pw_new_design"})
    assert (
        r.status_code == 200 and r.json()["experiment"] is None and r.json()["paywall_id"] == "pw_new_design"
    )


def test_update_audience__change_variants_after_exposure__409(api: Api, cid: str) -> None:
    api.placement(cid, "feature_gate")
    experiment = {
        "variants": [
            {"paywall_id": "pw_original", "traffic_percentage": 50},
            {"paywall_id": "pw_new_design", "traffic_percentage": 50},
        ]
    }
    aud = api.audience(cid, experiment=experiment)
    url = f"campaigns/{cid}/audiences/{aud['id']}"
    # Before anyone is exposed the split may change freely.
    r = api.put(
        url,
        {
            "experiment": {
                "variants": [
                    {"paywall_id": "pw_original", "traffic_percentage": 40},
                    {"paywall_id": "pw_new_design", "traffic_percentage": 40},
                ]
            }
        },
    )
    assert r.status_code == 200 and r.json()["experiment"]["holdout_percentage"] == 20
    api.register(user_id="someone")
    r = api.put(url, {"experiment": experiment})
    assert r.status_code == 409 and r.json()["field"] == "experiment.variants"


def test_delete_audience__renumbers_priorities(api: Api, cid: str) -> None:
    a, b, c = (api.audience(cid, name=n) for n in "abc")
    assert api.delete(f"campaigns/{cid}/audiences/{b['id']}").status_code == 204
    listed = api.get(f"campaigns/{cid}/audiences").json()
    assert [(x["id"], x["priority"]) for x in listed] == [(a["id"], 0), (c["id"], 1)]
    assert api.get(f"campaigns/{cid}/audiences/{b['id']}").status_code == 404


def test_reorder_audiences__exact_set__new_order(api: Api, cid: str) -> None:
    a, b, c = (api.audience(cid, name=n)["id"] for n in "abc")
    r = api.put(f"campaigns/{cid}/audiences/reorder", {"order": [c, a, b]})
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [c, a, b]
    assert [x["priority"] for x in r.json()] == [0, 1, 2]
    assert [x["id"] for x in api.get(f"campaigns/{cid}/audiences").json()] == [c, a, b]


def test_reorder_audiences__not_exactly_the_campaigns__422_and_unchanged(api: Api, cid: str) -> None:
    a, b = (api.audience(cid, name=n)["id"] for n in "ab")
    other = api.audience(api.campaign("other"), name="x")["id"]
    for order in ([a], [a, b, b], [a, b, other], [b, other], []):
        r = api.put(f"campaigns/{cid}/audiences/reorder", {"order": order})
        assert r.status_code == 422 and r.json()["field"] == "order", order
    assert api.put(f"campaigns/{cid}/audiences/reorder", {"orders": [a, b]}).status_code == 422
    assert [x["id"] for x in api.get(f"campaigns/{cid}/audiences").json()] == [a, b]


def test_audience__of_another_campaign__404(api: Api, cid: str) -> None:
    aud = api.audience(cid)
    other = api.campaign("other")
    assert api.get(f"campaigns/{other}/audiences/{aud['id']}").status_code == 404
    assert api.put(f"campaigns/{other}/audiences/{aud['id']}", {"name": "x"}).status_code == 404
    assert api.delete(f"campaigns/{other}/audiences/{aud['id']}").status_code == 404
