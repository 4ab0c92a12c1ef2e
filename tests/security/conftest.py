"""The security tests use the links API fixtures of the integration tests."""

from tests.integration.conftest import api, api_settings

__all__ = ["api", "api_settings"]
