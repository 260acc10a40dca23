"""One module per `manage.py` command; `help` of each says what it does."""
