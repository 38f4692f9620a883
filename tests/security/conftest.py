"""The stand-in Hub of the push tests, on 127.0.0.1, for the secrets test's real push."""

from tests.release.test_push import hub  # noqa: F401  (a fixture)
