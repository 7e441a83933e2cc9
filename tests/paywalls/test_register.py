"""The register(placement) decision, rule by rule: live placements only, audiences top to bottom,
entitlement skips, first match decides, user.seed, experiments (sticky variants, holdout), the
answer's shape (no targeting rules for public keys), and a fresh decision table after every change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from overture.clock import FrozenClock
from overture.core.bucketing import assign_variant, cumulative_bounds, user_seed
from overture.db.context import AppContext
from tests.conftest import create_key
from tests.paywalls.conftest import IOS_POWER_USER, Api

ANSWER_KEYS = {
    "result",
    "campaign_id",
    "placement",
    "audience_id",
    "paywall_id",
    "paywall",
    "experiment_id",
    "variant_id",
}
IOS = [{"field": "device.platform", "operator": "is", "value": "ios"}]
FREE = [{"field": "user.subscription_status", "operator": "is", "value": "free"}]


@pytest.fixture
def paywalls(api: Api) -> None:
    api.paywall("pw_a", "A", {"title": "Unlock A"})
    api.paywall("pw_b", "B", {"title": "Unlock B"})
    api.paywall("pw_c", "C", {"title": "Unlock C"})


def _nulls(answer: dict[str, Any], *keys: str) -> bool:
    return all(answer[k] is None for k in keys)


# -- live placements --------------------------------------------------------------------------------


def test_register__unknown_placement__placement_not_found(api: Api, paywalls: None) -> None:
    api.setup(audiences=[{"paywall_id": "pw_a"}])
    answer = api.register("nowhere")
    assert answer["result"] == "placement_not_found" and answer["placement"] == "nowhere"
    assert set(answer) == ANSWER_KEYS
    assert _nulls(
        answer, "campaign_id", "audience_id", "paywall_id", "paywall", "experiment_id", "variant_id"
    )


@pytest.mark.parametrize("status", ["inactive", "archived"])
def test_register__campaign_not_active__placement_not_found(api: Api, paywalls: None, status: str) -> None:
    cid = api.setup(audiences=[{"paywall_id": "pw_a"}])
    assert api.register()["result"] == "paywall"
    api.put(f"campaigns/{cid}", {"status": status})
    assert api.register()["result"] == "placement_not_found"
    api.put(f"campaigns/{cid}", {"status": "active"})
    assert api.register()["result"] == "paywall"


def test_register__paused_placement__placement_not_found(api: Api, paywalls: None) -> None:
    cid = api.campaign()
    placement = api.placement(cid, "feature_gate", status="paused")
    api.audience(cid, paywall_id="pw_a")
    assert api.register()["result"] == "placement_not_found"
    api.put(f"campaigns/{cid}/placements/{placement['id']}", {"status": "active"})
    assert api.register()["result"] == "paywall"


def test_register__placement_of_other_campaign__its_campaign_decides(api: Api, paywalls: None) -> None:
    first = api.setup(audiences=[{"paywall_id": "pw_a"}], placement="app_launch")
    second = api.setup(audiences=[{"paywall_id": "pw_b"}], placement="feature_gate")
    assert api.register("app_launch")["campaign_id"] == first
    answer = api.register("feature_gate")
    assert (answer["campaign_id"], answer["paywall_id"]) == (second, "pw_b")


# -- audiences --------------------------------------------------------------------------------------


def test_register__no_audience_matches__no_audience_match(api: Api, paywalls: None) -> None:
    cid = api.setup(audiences=[{"filters": IOS, "paywall_id": "pw_a"}])
    answer = api.register(device={"platform": "android"})
    assert answer["result"] == "no_audience_match"
    assert answer["campaign_id"] == cid and answer["placement"] == "feature_gate"
    assert _nulls(answer, "audience_id", "paywall_id", "paywall", "experiment_id", "variant_id")


def test_register__direct_paywall__answer_carries_the_paywall(api: Api, paywalls: None) -> None:
    cid = api.campaign()
    api.placement(cid)
    audience = api.audience(cid, filters=IOS, paywall_id="pw_a")
    answer = api.register(device={"platform": "ios"})
    assert answer == {
        "result": "paywall",
        "campaign_id": cid,
        "placement": "feature_gate",
        "audience_id": audience["id"],
        "paywall_id": "pw_a",
        "paywall": {"id": "pw_a", "name": "A", "config": {"title": "Unlock A"}},
        "experiment_id": None,
        "variant_id": None,
    }


def test_register__seed_example_audience__matches_power_users_only(api: Api, paywalls: None) -> None:
    seed_filters = [
        {"field": "device.platform", "operator": "is", "value": "ios"},
        {"field": "device.session_count", "operator": "gte", "value": 5, "conjunction": "and"},
        {"field": "user.subscription_status", "operator": "is", "value": "free", "conjunction": "and"},
    ]
    api.setup(audiences=[{"filters": seed_filters, "paywall_id": "pw_a"}])
    assert api.register(**IOS_POWER_USER)["result"] == "paywall"
    assert api.register(device={"platform": "ios", "session_count": 4}, user={"subscription_status": "free"})[
        "result"
    ] == ("no_audience_match")
    assert api.register(device={"platform": "ios", "session_count": 9})["result"] == "no_audience_match"


def test_register__or_conjunction__either_run_matches(api: Api, paywalls: None) -> None:
    filters = [
        {"field": "device.platform", "operator": "is", "value": "ios"},
        {"field": "user.plan", "operator": "is", "value": "free", "conjunction": "and"},
        {"field": "params.source", "operator": "in", "value": ["push", "email"], "conjunction": "or"},
    ]
    api.setup(audiences=[{"filters": filters, "paywall_id": "pw_a"}])
    assert api.register(device={"platform": "ios"}, user={"plan": "free"})["result"] == "paywall"
    assert api.register(params={"source": "email"})["result"] == "paywall"
    assert api.register(device={"platform": "ios"}, params={"source": "web"})["result"] == "no_audience_match"


def test_register__several_match__first_audience_decides_and_reorder_changes_it(
    api: Api, paywalls: None
) -> None:
    cid = api.campaign()
    api.placement(cid)
    ios = api.audience(cid, name="ios", filters=IOS, paywall_id="pw_a")
    free = api.audience(cid, name="free", filters=FREE, paywall_id="pw_b")
    everyone = api.audience(cid, name="everyone", paywall_id="pw_c")
    both = {"device": {"platform": "ios"}, "user": {"subscription_status": "free"}}
    assert api.register(**both)["audience_id"] == ios["id"]
    assert api.register(user={"subscription_status": "free"})["audience_id"] == free["id"]
    assert api.register()["audience_id"] == everyone["id"]
    api.put(f"campaigns/{cid}/audiences/reorder", {"order": [free["id"], ios["id"], everyone["id"]]})
    answer = api.register(**both)
    assert (answer["audience_id"], answer["paywall_id"]) == (free["id"], "pw_b")


def test_register__entitled_user__skips_audience(api: Api, paywalls: None) -> None:
    cid = api.campaign()
    api.placement(cid)
    upsell = api.audience(cid, name="upsell", entitlement_check="pro", paywall_id="pw_a")
    fallback = api.audience(cid, name="fallback", paywall_id="pw_b")
    assert api.register()["audience_id"] == upsell["id"]
    assert api.register(entitlements=["basic"])["audience_id"] == upsell["id"]
    assert api.register(entitlements=["basic", "pro"])["audience_id"] == fallback["id"]


def test_register__entitled_user_only_audience__no_audience_match(api: Api, paywalls: None) -> None:
    api.setup(audiences=[{"entitlement_check": "pro", "paywall_id": "pw_a"}])
    assert api.register(entitlements=["pro"])["result"] == "no_audience_match"


def test_register__audience_without_paywall__holds_out(api: Api, paywalls: None) -> None:
    cid = api.campaign()
    api.placement(cid)
    excluded = api.audience(cid, name="vip", filters=FREE)
    api.audience(cid, name="everyone", paywall_id="pw_a")
    answer = api.register(user={"subscription_status": "free"})
    assert answer["result"] == "holdout" and answer["audience_id"] == excluded["id"]
    assert _nulls(answer, "paywall_id", "paywall", "experiment_id", "variant_id")


# -- user.seed --------------------------------------------------------------------------------------


def test_register__user_seed__stable_hash_of_user_id(api: Api, paywalls: None) -> None:
    half = [{"field": "user.seed", "operator": "lte", "value": 49}]
    api.setup(audiences=[{"filters": half, "paywall_id": "pw_a"}])
    users = [f"seed_user_{i}" for i in range(40)]
    for user_id in users:
        expected = "paywall" if user_seed(user_id) <= 49 else "no_audience_match"
        assert api.register(user_id=user_id)["result"] == expected
    assert {user_seed(u) <= 49 for u in users} == {True, False}  # both sides exercised


def test_register__user_seed_given__callers_value_wins(api: Api, paywalls: None) -> None:
    api.setup(
        audiences=[{"filters": [{"field": "user.seed", "operator": "is", "value": 7}], "paywall_id": "pw_a"}]
    )
    user_id = next(f"u{i}" for i in range(1000) if user_seed(f"u{i}") != 7)
    assert api.register(user_id=user_id)["result"] == "no_audience_match"
    assert api.register(user_id=user_id, user={"seed": 7})["result"] == "paywall"


@pytest.mark.parametrize("seed", [100, -1, "7", 3.5, True])
def test_register__user_seed_out_of_range__422(api: Api, paywalls: None, seed: Any) -> None:
    api.setup(audiences=[{"paywall_id": "pw_a"}])
    r = api.post(
        "register", {"placement": "feature_gate", "user_id": "u", "user": {"seed": seed}}, public=True
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "user"


# -- experiments ------------------------------------------------------------------------------------


def test_register__experiment__sticky_variant_from_hash(api: Api, paywalls: None) -> None:
    experiment = {
        "variants": [
            {"paywall_id": "pw_a", "traffic_percentage": 50},
            {"paywall_id": "pw_b", "traffic_percentage": 50},
        ]
    }
    cid = api.setup(audiences=[{"experiment": experiment}])
    audience = api.get(f"campaigns/{cid}/audiences").json()[0]
    exp = audience["experiment"]
    bounds = cumulative_bounds([50, 50])
    seen = set()
    for i in range(30):
        user_id = f"sticky_{i}"
        index = assign_variant(exp["id"], user_id, bounds)
        assert index is not None
        for _ in range(2):  # sticky: the same answer every time
            answer = api.register(user_id=user_id)
            assert answer["result"] == "paywall" and answer["experiment_id"] == exp["id"]
            assert answer["variant_id"] == exp["variants"][index]["id"]
            assert answer["paywall_id"] == ["pw_a", "pw_b"][index]
        seen.add(index)
    assert seen == {0, 1}


def test_register__experiment_remainder__holdout(api: Api, paywalls: None) -> None:
    experiment = {"variants": [{"paywall_id": "pw_a", "traffic_percentage": 20}]}
    cid = api.setup(audiences=[{"experiment": experiment}])
    exp = api.get(f"campaigns/{cid}/audiences").json()[0]["experiment"]
    bounds = cumulative_bounds([20])
    results = {}
    for i in range(40):
        user_id = f"holdout_{i}"
        answer = api.register(user_id=user_id)
        expected = "paywall" if assign_variant(exp["id"], user_id, bounds) == 0 else "holdout"
        assert answer["result"] == expected
        results[expected] = answer
    holdout = results["holdout"]
    assert holdout["experiment_id"] == exp["id"] and holdout["audience_id"] is not None
    assert _nulls(holdout, "paywall_id", "paywall", "variant_id")


# -- the request and the key ------------------------------------------------------------------------


def test_register__public_key__answer_has_no_targeting_rules(api: Api, paywalls: None) -> None:
    api.setup(
        audiences=[
            {
                "filters": IOS,
                "entitlement_check": "pro",
                "frequency_cap": "3_times_total",
                "paywall_id": "pw_a",
            }
        ]
    )
    r = api.post(
        "register", {"placement": "feature_gate", "user_id": "u", "device": {"platform": "ios"}}, public=True
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == ANSWER_KEYS
    for secret in ("filters", "operator", "entitlement", "frequency_cap", "device.platform"):
        assert secret not in r.text


def test_register__key_scopes(ctx: AppContext, api: Api, paywalls: None) -> None:
    api.setup(audiences=[{"paywall_id": "pw_a"}])
    body = {"placement": "feature_gate", "user_id": "u"}
    decider = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['decisions:write'])}"}
    reader = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['campaigns:read'])}"}
    events_only = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['events:write'], public=True)}"}
    assert api.post("register", body, headers=decider).json()["result"] == "paywall"
    assert api.post("register", body, headers=api.ws.headers).status_code == 200  # admin
    assert api.post("register", body, headers=reader).status_code == 403
    assert api.post("register", body, headers=events_only).status_code == 403


def test_register__heading_prefix__same_decision(api: Api, api_v1: Api, paywalls: None) -> None:
    api.setup(audiences=[{"paywall_id": "pw_a"}])
    assert api_v1.register() == api.register()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u"}, "placement"),
        ({"placement": "feature_gate"}, "user_id"),
        ({"placement": "feature_gate", "user_id": ""}, "user_id"),
        ({"placement": "feature_gate", "user_id": "u", "device": "ios"}, "device"),
        ({"placement": "feature_gate", "user_id": "u", "entitlements": "pro"}, "entitlements"),
        ({"placement": "feature_gate", "user_id": "u", "extra": 1}, "extra"),
    ],
)
def test_register__bad_body__422(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.post("register", body, public=True)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == field


# -- time and freshness -----------------------------------------------------------------------------


def test_register__relative_time_filter__uses_the_app_clock(
    api: Api, paywalls: None, frozen_clock: FrozenClock
) -> None:
    recent = [{"field": "user.installed_at", "operator": "within_last", "value": "7d"}]
    api.setup(audiences=[{"filters": recent, "paywall_id": "pw_a"}])
    installed = (frozen_clock.now() - timedelta(days=3)).isoformat()
    assert api.register(user={"installed_at": installed})["result"] == "paywall"
    frozen_clock.advance(days=5)  # no configuration change: the compiled table reads the clock
    assert api.register(user={"installed_at": installed})["result"] == "no_audience_match"


def test_register__after_configuration_change__next_register_sees_it(api: Api, paywalls: None) -> None:
    cid = api.campaign()
    api.placement(cid)
    audience = api.audience(cid, filters=IOS, paywall_id="pw_a")
    url = f"campaigns/{cid}/audiences/{audience['id']}"
    assert api.register(device={"platform": "ios"})["paywall_id"] == "pw_a"
    api.put(url, {"paywall_id": "pw_b"})
    assert api.register(device={"platform": "ios"})["paywall_id"] == "pw_b"
    api.put("paywalls/pw_b", {"config": {"title": "New copy"}})
    assert api.register(device={"platform": "ios"})["paywall"]["config"] == {"title": "New copy"}
    api.put(url, {"filters": FREE})
    assert api.register(device={"platform": "ios"})["result"] == "no_audience_match"
    api.delete(url)
    assert api.register(user={"subscription_status": "free"})["result"] == "no_audience_match"
    api.placement(api.campaign("second"), "app_launch")
    assert api.register("app_launch")["result"] == "no_audience_match"
