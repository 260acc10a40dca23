from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        RESERVED = "reserved"
        PAID = "paid"
        SHIPPED = "shipped"
        REFUNDED = "refunded"
        CANCELLED = "cancelled"

    customer = models.CharField(max_length=100)
    total_cents = models.PositiveIntegerField()
    card = models.CharField(max_length=20, default="ok", help_text="ok, flaky or declined")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLACED)
    receipt_sent = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"order {self.pk} ({self.customer}, {self.status})"
