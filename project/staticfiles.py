"""Static files: WhiteNoise's compressed, hashed storage, usable before ``collectstatic``.

In production ``manage.py collectstatic`` writes every file of the admin into
``STATIC_ROOT`` under a content-hashed name, gzip and brotli copies beside it, and
a manifest; WhiteNoise then serves them with far-future cache headers. A checkout
where ``collectstatic`` never ran has no manifest, and Django's manifest storage
would fail every page that links a stylesheet; this one hands out the plain names
then, which WhiteNoise serves from the apps themselves (``WHITENOISE_USE_FINDERS``).
docs/operations.md ("Static files") has the deployment steps.
"""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed names once ``collectstatic`` has written its manifest, plain names before."""

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # no manifest: collectstatic has not run here
            return name
        return super().stored_name(name)
