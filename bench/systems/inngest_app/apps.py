from django.apps import AppConfig


class BenchInngestConfig(AppConfig):
    name = "bench.systems.inngest_app"
    label = "bench_inngest"
