from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Staff authentication: the TOTP step and enrolment, lockout, session limits, closing a user's sockets."""

    name = "accounts"
    verbose_name = "Accounts (MFA, sessions)"

    def ready(self) -> None:
        from accounts import receivers  # noqa: F401  (connects the auth and lockout signal receivers)
