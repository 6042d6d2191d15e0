"""pydeploy: deploy, schedule, verify, report and benchmark the WhatsApp monitoring package."""

__version__ = "0.1.0"
