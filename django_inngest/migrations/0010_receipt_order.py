"""Order of receipt: `Event.receipt_order`, set by the database on insert, and
`Pause.after_receipt`, which replaces `Pause.after_id` (ids carry a sender's seed time).

PostgreSQL gives each event the next value of a sequence (the column's default); SQLite's
inserts compute it (store/events.py). Existing events are numbered in id order and existing
pauses keep matching exactly the events they matched before.
"""

from django.db import migrations, models

SEQUENCE = "django_inngest_event_receipt_order_seq"


def number_existing(apps, schema_editor):
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    event = quote(apps.get_model("django_inngest", "Event")._meta.db_table)
    pause = quote(apps.get_model("django_inngest", "Pause")._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {event} SET receipt_order = n.position FROM (SELECT id, "
                f"row_number() OVER (ORDER BY id) AS position FROM {event}) n "
                f"WHERE {event}.id = n.id"
            )
        else:
            cursor.execute(f"SELECT id FROM {event} ORDER BY id")
            ids = [row[0] for row in cursor.fetchall()]
            cursor.executemany(
                f"UPDATE {event} SET receipt_order = %s WHERE id = %s",
                [(position, id_) for position, id_ in enumerate(ids, start=1)],
            )
        cursor.execute(
            f"UPDATE {pause} SET after_receipt = COALESCE((SELECT e.receipt_order FROM {event} e "
            f"WHERE e.id <= {pause}.after_id ORDER BY e.id DESC LIMIT 1), 0)"
        )
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE SEQUENCE {SEQUENCE} OWNED BY {event}.receipt_order")
            cursor.execute(
                f"SELECT setval('{SEQUENCE}', COALESCE((SELECT max(receipt_order) "
                f"FROM {event}), 0) + 1, false)"
            )
            cursor.execute(
                f"ALTER TABLE {event} ALTER COLUMN receipt_order SET DEFAULT nextval('{SEQUENCE}')"
            )


def forget_sequence(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        event = connection.ops.quote_name(apps.get_model("django_inngest", "Event")._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {event} ALTER COLUMN receipt_order DROP DEFAULT")
            cursor.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")


class Migration(migrations.Migration):
    dependencies = [
        ("django_inngest", "0009_containment"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="receipt_order",
            field=models.BigIntegerField(
                editable=False,
                help_text="Increases with each event stored; set by the database on insert "
                "(store/events.py), whatever id or seed the sender chose.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="pause",
            name="after_receipt",
            field=models.BigIntegerField(
                default=0,
                help_text="Only events received later (a greater `Event.receipt_order`) match.",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(number_existing, forget_sequence),
        migrations.RemoveField(model_name="pause", name="after_id"),
        migrations.RemoveIndex(model_name="event", name="inngest_event_pending"),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("pending", True)),
                fields=["receipt_order"],
                name="inngest_event_pending",
            ),
        ),
    ]
