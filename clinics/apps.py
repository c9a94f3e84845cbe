from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class ClinicsConfig(AppConfig):
    name = "clinics"
    verbose_name = "Clinics"

    def ready(self) -> None:
        # PostgreSQL row-level security: every connection takes the app role and its clinic scope; every
        # migrate (re)installs the policies, the role and its grants (clinics.db_scope, clinics.db_security).
        from clinics import db_scope, db_security

        connection_created.connect(db_scope.on_connection_created, dispatch_uid="careline-db-scope")
        post_migrate.connect(db_security.on_post_migrate, sender=self, dispatch_uid="careline-db-security")
