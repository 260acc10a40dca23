"""The engine's management commands (`inngest_worker`, `inngest_send`, `inngest_status`, ...)."""
