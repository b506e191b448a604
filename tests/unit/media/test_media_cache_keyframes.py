from confsvc.media.cache import PacketCache
from confsvc.media.keyframes import KeyframeThrottle


class P:
    def __init__(self, seq, keyframe=False, arrival=0.0):
        self.seq, self.keyframe, self.arrival = seq, keyframe, arrival


def test_cache_answers_by_sequence_across_wrap():
    c = PacketCache(64, 10)
    for s in range(65500, 65536):
        c.add(P(s))
    for s in range(0, 20):
        c.add(P(s))
    assert c.get(65530).seq == 65530
    assert c.get(19).seq == 19
    assert c.get(65400) is None  # overwritten


def test_keyframe_run_in_order_without_duplicates_or_older_packets():
    c = PacketCache(64, 10)
    c.add(P(10, keyframe=True, arrival=5.0))
    c.add(P(12))
    c.add(P(11))  # reordered
    c.add(P(12))  # duplicate (retransmission)
    c.add(P(9))  # older than the keyframe: not part of its run
    assert [p.seq for p in c.keyframe_run(5.5, 1.0)] == [10, 11, 12]
    assert c.keyframe_run(7.0, 1.0) is None  # too old


def test_keyframe_run_is_dropped_when_it_overflows():
    c = PacketCache(64, 3)
    c.add(P(1, keyframe=True))
    for s in range(2, 6):
        c.add(P(s))
    assert c.keyframe_run(0.0, 1.0) is None
    c.add(P(6, keyframe=True))
    assert [p.seq for p in c.keyframe_run(0.0, 1.0)] == [6]


def test_throttle_sends_one_per_interval_and_keeps_a_deferred_request():
    t = KeyframeThrottle(0.5)
    assert t.request(10.0)
    assert not t.request(10.1) and not t.request(10.2)
    assert not t.due(10.3)
    assert t.due(10.5)  # the deferred request goes out once
    assert not t.due(10.9)
    assert (t.sent, t.throttled) == (2, 2)


def test_keyframe_cancels_a_deferred_request():
    t = KeyframeThrottle(0.5)
    t.request(0.0)
    t.request(0.1)
    t.keyframe_arrived()
    assert not t.due(1.0)
