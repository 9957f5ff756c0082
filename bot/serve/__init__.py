"""The long-running processes of the Procfile: web, worker and ingest, one module each, plus the
metrics and the clean shutdown they share. The CLI's `serve` commands only call into here."""
