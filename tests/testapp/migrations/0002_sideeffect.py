from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("testapp", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="SideEffect",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("run_id", models.CharField(max_length=26)),
                ("step", models.CharField(max_length=64)),
                ("pid", models.IntegerField()),
                (
                    "at",
                    models.FloatField(help_text="Wall clock, seconds since the epoch."),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["run_id", "step"], name="testapp_effect_step")
                ],
            },
        ),
    ]
