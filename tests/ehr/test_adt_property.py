"""Property test of the ADT handler: arbitrary segment soups get an ACK (AA, AE or AR), never an exception."""

from __future__ import annotations

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr.hl7.adt import handle_message
from ehr.models import Hl7Message

pytestmark = pytest.mark.django_db

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
field = st.one_of(text, st.sampled_from(["", "^", "~", "\\", "&", "A04", "A40", "ADT^A08", "2.5", "2.3", "MR"]))
segment_ids = st.sampled_from(["MSH", "EVN", "PID", "MRG", "PV1", "NK1", "ZZZ", "OBX", "msh", "", "MS"])
segment = st.builds(
    lambda name, sep, fields: name + sep + sep.join(fields),
    segment_ids,
    st.sampled_from(["|", "|", "|", "#", "^", "\r"]),
    st.lists(field, max_size=14),
)
msh = st.builds(
    lambda trigger, control, version, rest: (
        f"MSH|^~\\&|APP|FAC|CL|north|20260101||ADT^{trigger}|{control}|P|{version}" + rest
    ),
    st.sampled_from(["A04", "A08", "A28", "A31", "A40", "A01", "A03", "", "A4"]),
    st.one_of(text, st.just("C-1")),
    st.sampled_from(["2.5", "2.3", "2.8.2", "", "9", "2.5^x"]),
    st.one_of(st.just(""), text),
)
soup = st.builds(
    lambda head, body, sep, tail: (head + sep + sep.join(body)).encode("utf-8") + tail,
    st.one_of(msh, segment),
    st.lists(segment, max_size=6),
    st.sampled_from(["\r", "\n", "\r\n"]),
    st.one_of(st.just(b""), st.binary(max_size=8)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(soup, st.binary(max_size=200)))
def test_any_segment_soup_gets_an_ack_and_a_log_row(personas, data) -> None:
    result = handle_message(data=data, clinic=personas.north)

    assert result.code in ("AA", "AE", "AR")
    msa = hl7.parse(result.ack).segment("MSA")
    assert str(msa[1]) == result.code
    assert Hl7Message.objects.get(pk=result.message_id).ack_code == result.code
