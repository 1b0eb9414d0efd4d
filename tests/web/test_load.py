"""200 concurrent page and CSV requests against the real server: every one answered, no error,
and every CSV download byte-equal to ``nightlake sql`` (answers do not mix under load).

Latency is not asserted (it depends on the machine); bench/serve_load.py reports it.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from .independent import lake_nights, nightlake_sql
from .load import CSV_QUERY, hammer


@pytest.mark.slow
def test_200_concurrent_requests_are_all_answered(served, served_lake):
    answers = hammer(served, lake_nights(served_lake), count=200)
    assert len(answers) == 200
    assert [a for a in answers if a.status != 200] == []
    csv_answers = [a for a in answers if urlsplit(a.path).path == "/sql.csv"]
    assert csv_answers
    want = {}
    for answer in csv_answers:
        night = parse_qs(urlsplit(answer.path).query)["p.night"][0]
        if night not in want:
            body = nightlake_sql(served_lake, CSV_QUERY, "csv", night=night)
            want[night] = hashlib.sha256(body).hexdigest()
        assert answer.sha256 == want[night], answer.path
