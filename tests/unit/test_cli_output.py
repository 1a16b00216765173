"""What `journeyflow up` prints for each output: one line, times in UTC+8
whatever zone the output's decision time carries."""

from __future__ import annotations

from streams.cli import describe_output


def test_merges_and_actions_print_in_one_time_zone() -> None:
    merge = {
        "kind": "merge",
        "decided_at": "2026-11-24T01:47:21Z",
        "absorbed": "device_id:d1",
        "survivor": "member_id:M-1",
        "absorbed_identifiers": ["device_id:d1"],
    }
    action = {
        "kind": "action",
        "decided_at": "2026-11-24T09:47:21+08:00",
        "action": "send_coupon",
        "params": {"coupon_id": "CP-1"},
        "customer_id": "member_id:M-1",
        "reason": "asked about price",
    }

    assert describe_output(merge) == (
        "09:47:21 merge        device_id:d1 -> member_id:M-1 | holds device_id:d1"
    )
    assert describe_output(action).startswith("09:47:21 action       send_coupon")
