"""The model channel's notices (vectorstore.ModelNotice): encoded and decoded by their one owner."""

from __future__ import annotations

import pytest

from vectorstore import ModelNotice


@pytest.mark.parametrize("notice", [ModelNotice(ModelNotice.STAGED, "shop", 3),
                                    ModelNotice(ModelNotice.ACTIVATED, "a.b-c_d", 12),
                                    ModelNotice(ModelNotice.DELTA, "shop", 3, "1700000000000-7")])
def test_a_notice_reads_back_as_written(notice: ModelNotice) -> None:
    assert ModelNotice.decode(notice.encode()) == notice
    assert ModelNotice.decode(notice.encode().encode()) == notice  # as pub/sub hands it over: bytes


def test_a_delta_frame_around_an_entry_id_is_the_delta_notice() -> None:
    head, tail = ModelNotice.delta_frame("shop", 4)
    entry = "1700000000000-0"
    assert head + entry + tail == ModelNotice(ModelNotice.DELTA, "shop", 4, entry).encode()
    assert ModelNotice.decode(head + entry + tail) == ModelNotice(ModelNotice.DELTA, "shop", 4, entry)


@pytest.mark.parametrize("junk", ["[]", "not json", '{"event": 1, "version": 2}', "null", b"\xff\xfe", None,
                                  '{"event": "activated", "version": "x"}', '{"event": "staged", "version": 1e400}',
                                  '{"version": -3}', '{"event": "staged", "version": 0}'])
def test_what_is_not_a_notice_decodes_to_none(junk: object) -> None:
    assert ModelNotice.decode(junk) is None


def test_an_unknown_kind_is_read_and_left_to_the_reader() -> None:
    notice = ModelNotice.decode('{"event": "renamed", "version": 2, "model": "m", "id": 5}')
    assert notice == ModelNotice("renamed", "m", 2, None)
