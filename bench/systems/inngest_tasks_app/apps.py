from django.apps import AppConfig


class BenchInngestTasksConfig(AppConfig):
    name = "bench.systems.inngest_tasks_app"
    label = "bench_inngest_tasks"
