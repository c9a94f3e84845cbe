from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from ops.collectors import DomainCollector

        # Once per process (ready() runs once); scrape-time gauges read from the database.
        if not getattr(REGISTRY, "_careline_domain_collector", False):
            REGISTRY.register(DomainCollector())
            REGISTRY._careline_domain_collector = True  # type: ignore[attr-defined]
