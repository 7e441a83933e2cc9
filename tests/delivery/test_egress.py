"""The egress guard: every forbidden address form is refused — resolved, not textual — at save, at
test and at send, redirects included, unless the operator allowlist permits it."""

from __future__ import annotations

import ipaddress

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery import Message, send_batch
from overture.delivery.egress import EgressGuard, EgressRefused, HostUnresolved, address_refusal
from overture.delivery.service import get_destination
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Receiver, create_destination, dest_url

# Hosts as a user would type them into a URL, and what they really are.
FORBIDDEN_HOSTS = [
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("127.1", id="short-dotted-loopback"),
    pytest.param("0x7f000001", id="hex-loopback"),
    pytest.param("2130706433", id="decimal-loopback"),
    pytest.param("localhost", id="name-resolving-to-loopback"),
    pytest.param("[::1]", id="ipv6-loopback"),
    pytest.param("[::ffff:169.254.169.254]", id="ipv4-mapped-metadata"),
    pytest.param("[::ffff:127.0.0.1]", id="ipv4-mapped-loopback"),
    pytest.param("[::7f00:1]", id="ipv4-compatible-loopback"),
    pytest.param("169.254.169.254", id="metadata"),
    pytest.param("10.1.2.3", id="rfc1918-10"),
    pytest.param("172.16.0.1", id="rfc1918-172"),
    pytest.param("192.168.1.1", id="rfc1918-192"),
    pytest.param("100.64.0.1", id="cgnat"),
    pytest.param("[fc00::1]", id="ula"),
    pytest.param("[fe80::1]", id="ipv6-link-local"),
    pytest.param("0.0.0.0", id="unspecified"),
    pytest.param("[::]", id="ipv6-unspecified"),
    pytest.param("224.0.0.1", id="multicast"),
    pytest.param("240.0.0.1", id="reserved"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("[64:ff9b::7f00:1]", id="nat64"),
    pytest.param("[2002:7f00:1::1]", id="6to4-embedding-loopback"),
]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.0.8",
        "198.18.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12::1",
        "fe80::1",
        "ff02::1",
        "::ffff:8.8.8.8",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::808:808",
        "2002:a00:1::",
        "2001::1",
        "2001:db8::1",
    ],
)
def test_address_refusal__non_public__has_reason(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2002:808:808::1"]
)
def test_address_refusal__public__none(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_check_url__forbidden_host__refused(host: str) -> None:
    with pytest.raises(EgressRefused):
        EgressGuard([]).check_url(f"http://{host}:8080/hook")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "localhost", "[::ffff:127.0.0.1]"]
)
def test_check_url__allowlisted_loopback__allowed_in_every_spelling(host: str) -> None:
    target = EgressGuard(["127.0.0.0/8"]).check_url(f"http://{host}:8080/hook")
    for ip in target.addresses:
        v4 = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip
        assert v4 == ipaddress.ip_address("127.0.0.1")


def test_check_url__allowlist__does_not_open_other_ranges() -> None:
    guard = EgressGuard(["127.0.0.1/32"])
    for url in ("http://169.254.169.254/", "http://10.0.0.1/", "http://[::ffff:169.254.169.254]/"):
        with pytest.raises(EgressRefused):
            guard.check_url(url)


def test_check_host__any_forbidden_address_of_a_name__refused() -> None:
    # Given a name with one public and one private address (a round-robin smuggling attempt)
    guard = EgressGuard(
        [], resolver=lambda host, port: (ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5"))
    )
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.5"):
        guard.check_host("mixed.example", 443)


def test_check_url__non_http_scheme_or_garbage__refused() -> None:
    guard = EgressGuard(["0.0.0.0/0"])
    for url in ("file:///etc/passwd", "gopher://127.0.0.1/", "http://", "http://exa mple.com/"):
        with pytest.raises(EgressRefused):
            guard.check_url(url)


def test_check_host__unresolvable__host_unresolved() -> None:
    with pytest.raises(HostUnresolved):
        EgressGuard([]).check_host("does-not-exist.invalid", 80)


def test_request__connects_to_the_checked_address__no_second_lookup(receiver: Receiver) -> None:
    # Given a resolver under our control that says "pinned.test" is 127.0.0.1 (the system resolver
    # does not know the name at all), and counts lookups
    calls: list[str] = []

    def resolver(host: str, port: int) -> tuple[ipaddress.IPv4Address, ...]:
        calls.append(host)
        return (ipaddress.ip_address("127.0.0.1"),)  # type: ignore[return-value]

    guard = EgressGuard(["127.0.0.1/32"], resolver=resolver)
    try:
        # When two requests go out through the guard
        for _ in range(2):
            r = guard.request("POST", f"http://pinned.test:{receiver.port}/x", content=b"{}")
            assert r.status_code == 200
    finally:
        guard.close()
    # Then the socket went to the address the guard checked (httpx never resolved the name itself),
    # the Host header kept the name, and the cached answer served both checks
    assert receiver.requests[0].headers["host"] == f"pinned.test:{receiver.port}"
    assert calls == ["pinned.test"]


# -- through the API and send_batch --------------------------------------------------------------


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_save__forbidden_webhook_host__422_config_url(
    client: TestClient, workspace: WorkspaceFixture, strict_egress: EgressGuard, host: str
) -> None:
    r = client.post(
        dest_url(workspace),
        headers=workspace.headers,
        json={"name": "x", "type": "webhook", "config": {"url": f"http://{host}:9999/hook"}},
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "config.url"
    assert r.json()["code"] == "egress_refused"
    assert client.get(dest_url(workspace), headers=workspace.headers).json() == []


@pytest.mark.parametrize("host", ["127.1", "0x7f000001", "2130706433", "localhost"])
def test_save__loopback_spellings_with_allowlist__accepted(
    client: TestClient, workspace: WorkspaceFixture, host: str
) -> None:
    # The test settings allowlist 127.0.0.1/32, like OVERTURE_EGRESS_ALLOW=127.0.0.1/32
    create_destination(client, workspace, "webhook", {"url": f"http://{host}:9999/hook"})


def test_save__metadata_even_with_loopback_allowlist__422(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        dest_url(workspace),
        headers=workspace.headers,
        json={
            "name": "x",
            "type": "webhook",
            "config": {"url": "http://[::ffff:169.254.169.254]/latest/meta-data"},
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "config.url"


def test_save__patch_to_forbidden_url__422_and_unchanged(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    d = create_destination(client, workspace, "webhook", {"url": receiver.url})
    r = client.patch(
        dest_url(workspace, f"/{d['id']}"),
        headers=workspace.headers,
        json={"config": {"url": "http://10.0.0.1/"}},
    )
    assert r.status_code == 422 and r.json()["field"] == "config.url"
    assert (
        client.get(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers).json()["config"]["url"]
        == receiver.url
    )


@pytest.mark.parametrize(
    ("type_", "config", "field"),
    [
        (
            "smtp",
            {"host": "10.0.0.25", "port": 25, "from": "a@b.co", "subject": "s", "body": "b"},
            "config.host",
        ),
        (
            "smtp",
            {"host": "169.254.169.254", "port": 25, "from": "a@b.co", "subject": "s", "body": "b"},
            "config.host",
        ),
        (
            "file",
            {
                "url": "s3://bucket-x/p",
                "storage_options": {"client_kwargs": {"endpoint_url": "http://169.254.169.254"}},
            },
            "config.storage_options.client_kwargs.endpoint_url",
        ),
        (
            "file",
            {"url": "s3://bucket-x/p", "storage_options": {"endpoint_url": "http://0x7f000001:9000"}},
            "config.storage_options.endpoint_url",
        ),
    ],
)
def test_save__forbidden_smtp_host_or_s3_endpoint__422(
    client: TestClient,
    workspace: WorkspaceFixture,
    strict_egress: EgressGuard,
    type_: str,
    config: dict[str, object],
    field: str,
) -> None:
    r = client.post(
        dest_url(workspace), headers=workspace.headers, json={"name": "x", "type": type_, "config": config}
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_test_and_send__allowlist_removed_after_save__failed_not_sent(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a destination saved while the allowlist permitted loopback
    d = create_destination(client, workspace, "webhook", {"url": receiver.url + "/hook"})
    # When the server runs without it (as in production)
    monkeypatch.setitem(ctx.services, "delivery.egress", EgressGuard([]))
    # Then the test endpoint reports a failed outcome (not a 500), and send refuses every message
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "failed" and "egress refused" in r.json()["error"]
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    outcomes = send_batch(ctx, row, [Message("k1", {"a": 1}), Message("k2", {"a": 2})])
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("loopback" in (o.error or "") for o in outcomes)
    assert receiver.requests == []


def test_test_and_send__name_rebinds_to_loopback__failed(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name that resolved to a public address at save time
    answers = {"hooks.customer.test": "93.184.216.34"}

    def resolver(host: str, port: int) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        return (ipaddress.ip_address(answers[host]),)

    monkeypatch.setitem(ctx.services, "delivery.egress", EgressGuard([], resolver=resolver))
    d = create_destination(
        client, workspace, "webhook", {"url": f"http://hooks.customer.test:{receiver.port}/"}
    )
    # When its DNS later answers 127.0.0.1 (DNS rebinding), with a fresh cache
    answers["hooks.customer.test"] = "127.0.0.1"
    monkeypatch.setitem(ctx.services, "delivery.egress", EgressGuard([], resolver=resolver))
    # Then test and send refuse, and nothing reaches the loopback receiver
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.json()["status"] == "failed"
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    assert send_batch(ctx, row, [Message("k", {})])[0].status == "failed"
    assert receiver.requests == []


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://0x0a000001/",
        "http://10.0.0.1:8080/internal",
    ],
)
def test_send__redirect_to_forbidden_address__failed_and_not_followed(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver, location: str
) -> None:
    receiver.rule = lambda req: (307, {"Location": location}, b"")
    d = create_destination(client, workspace, "webhook", {"url": receiver.url + "/hook"})
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    outcome = send_batch(ctx, row, [Message("k", {"x": 1})])[0]
    assert outcome.status == "failed"
    assert "egress refused" in (outcome.error or "")
    assert len(receiver.requests) == 1
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "failed"


def test_send__redirect_307_to_allowed_path__followed_with_body(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    receiver.rule = lambda req: (308, {"Location": "/final"}, b"") if req.path == "/hook" else (204, {}, b"")
    d = create_destination(client, workspace, "webhook", {"url": receiver.url + "/hook"})
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    assert send_batch(ctx, row, [Message("k", {"x": 1})])[0].status == "sent"
    assert [(r.method, r.path, r.body) for r in receiver.requests] == [
        ("POST", "/hook", b'{"x":1}'),
        ("POST", "/final", b'{"x":1}'),
    ]


def test_send__redirect_loop__failed_bounded(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    receiver.rule = lambda req: (307, {"Location": req.path + "x"}, b"")
    d = create_destination(client, workspace, "webhook", {"url": receiver.url + "/a"})
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    outcome = send_batch(ctx, row, [Message("k", {})])[0]
    assert outcome.status == "failed" and "redirects" in (outcome.error or "")
    assert len(receiver.requests) == 6  # the first request and 5 redirects


def test_save__unresolvable_host__422_names_field(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        dest_url(workspace),
        headers=workspace.headers,
        json={"name": "x", "type": "webhook", "config": {"url": "https://hooks.does-not-exist.invalid/x"}},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "config.url" and r.json()["code"] == "egress_unresolved"
