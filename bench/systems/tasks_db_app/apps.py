from django.apps import AppConfig


class BenchTasksConfig(AppConfig):
    name = "bench.systems.tasks_db_app"
    label = "bench_tasks_db"
