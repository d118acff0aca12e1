"""ASGI entry point: ``uvicorn app.main:app``.

Importing this module validates the environment first, before the heavier
imports; on a bad or missing variable the process exits with status 1 and one
secret-free line on stderr.
"""

from app.config import load_settings_or_exit

settings = load_settings_or_exit()

from app.application import create_app  # noqa: E402 - only once the settings are valid

app = create_app(settings)
