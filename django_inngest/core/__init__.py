"""The engine without Django: events, function definitions, expressions, schedules, flow control and
the execution of one invocation. Imports only the standard library and its own few libraries (a test
checks it)."""
