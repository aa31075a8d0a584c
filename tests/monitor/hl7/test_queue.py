"""The durable queue: control ids unique and stable across restarts, alarms first, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.hl7.queue import Hl7Queue, Kind, QueuedMessage


def test_control_ids_are_unique_and_go_on_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = Hl7Queue(path, now=lambda: 100.0)
    first = [q.enqueue(Kind.ALARM, "w1/b1", lambda cid: f"msg {cid}") for _ in range(3)]
    head = q.head()
    assert head is not None
    assert head.payload == f"msg {first[0]}"  # built with its own control id
    q.delivered(head.id)
    tag = q.tag
    q.close()
    q = Hl7Queue(path, now=lambda: 200.0)
    assert q.tag == tag
    # the two not delivered keep their ids; a new one gets a new id, even after the delete
    waiting = [m.control_id for m in drain(q)]
    assert waiting == first[1:]
    new = q.enqueue(Kind.ALARM, "w1/b1", lambda cid: cid)
    assert new not in first
    assert new is not None
    assert len(new) <= 20
    q.close()


def drain(q: Hl7Queue) -> list[QueuedMessage]:
    out = []
    while (m := q.head()) is not None:
        out.append(m)
        q.delivered(m.id)
    return out


def test_a_new_file_never_reuses_the_ids_of_an_old_one(tmp_path: Path) -> None:
    a = Hl7Queue(tmp_path / "a.sqlite")
    b = Hl7Queue(tmp_path / "b.sqlite")
    assert a.enqueue(Kind.VITALS, "b", str) != b.enqueue(Kind.VITALS, "b", str)
    a.close()
    b.close()


def test_alarms_go_before_vitals_and_each_kind_in_order(tmp_path: Path) -> None:
    q = Hl7Queue(tmp_path / "q.sqlite")
    q.enqueue(Kind.VITALS, "b1", lambda _: "v1")
    q.enqueue(Kind.ALARM, "b1", lambda _: "a1")
    q.enqueue(Kind.VITALS, "b2", lambda _: "v2")
    q.enqueue(Kind.ALARM, "b2", lambda _: "a2")
    assert [m.payload for m in drain(q)] == ["a1", "a2", "v1", "v2"]
    q.close()


def test_a_failed_message_stays_at_the_head_counting_attempts(tmp_path: Path) -> None:
    q = Hl7Queue(tmp_path / "q.sqlite")
    q.enqueue(Kind.ALARM, "b1", lambda _: "a1")
    q.enqueue(Kind.ALARM, "b1", lambda _: "a2")
    head = q.head()
    assert head is not None
    q.failed(head.id, "AE: nope")
    q.failed(head.id, "AE: nope")
    again = q.head()
    assert again is not None
    assert (again.payload, again.attempts, again.control_id) == ("a1", 2, head.control_id)
    q.close()


def test_a_repeated_event_key_is_queued_once_even_after_delivery(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = Hl7Queue(path)
    assert q.enqueue(Kind.ALARM, "b1", str, key="b1/a/1") is not None
    assert q.enqueue(Kind.ALARM, "b1", str, key="b1/a/1") is None
    drain(q)
    q.close()
    q = Hl7Queue(path)
    assert q.enqueue(Kind.ALARM, "b1", str, key="b1/a/1") is None
    assert q.enqueue(Kind.ALARM, "b1", str, key="b1/a/2") is not None
    q.close()


def test_count_and_age_of_the_oldest(tmp_path: Path) -> None:
    now = [10.0]
    q = Hl7Queue(tmp_path / "q.sqlite", now=lambda: now[0])
    assert q.oldest_t() is None
    q.enqueue(Kind.VITALS, "b1", str)
    now[0] = 12.0
    q.enqueue(Kind.ALARM, "b1", str)
    assert (q.count(), q.count(Kind.ALARM), q.count(Kind.VITALS)) == (2, 1, 1)
    assert (q.oldest_t(), q.oldest_t(Kind.ALARM)) == (10.0, 12.0)
    assert [q.next_number("s"), q.next_number("s")] == [1, 2]
    q.close()


def test_a_failing_builder_queues_nothing(tmp_path: Path) -> None:
    q = Hl7Queue(tmp_path / "q.sqlite")

    def broken(_: str) -> str:
        raise ValueError("no observation")

    with pytest.raises(ValueError, match="no observation"):
        q.enqueue(Kind.VITALS, "b1", broken, key="k")
    assert len(q) == 0
    assert q.enqueue(Kind.VITALS, "b1", str, key="k") is not None
    q.close()


def test_a_held_bed_is_passed_over_whole(tmp_path: Path) -> None:
    q = Hl7Queue(tmp_path / "q.sqlite")
    q.enqueue(Kind.ALARM, "w1/b1", lambda _: "b1 alarm")
    q.enqueue(Kind.VITALS, "w1/b1", lambda _: "b1 vitals")
    q.enqueue(Kind.VITALS, "w1/b2", lambda _: "b2 vitals")
    q.enqueue(Kind.ALARM, "w1/b3", lambda _: "b3 alarm")
    held = q.head(skip={"w1/b1"})
    assert held is not None
    assert held.payload == "b3 alarm"
    q.delivered(held.id)
    nxt = q.head(skip={"w1/b1"})
    assert nxt is not None
    assert nxt.payload == "b2 vitals"  # never b1's vitals before b1's alarm
    q.delivered(nxt.id)
    assert q.head(skip={"w1/b1"}) is None
    first = q.head()
    assert first is not None
    assert first.payload == "b1 alarm"
    q.close()
