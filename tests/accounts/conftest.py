"""Account tests reuse the console's case factory."""

from tests.contactcenter.conftest import make_case  # noqa: F401  (fixture)
