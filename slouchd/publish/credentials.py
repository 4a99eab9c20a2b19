"""The broker password and TLS context from ``[mqtt]`` settings (see docs/mqtt.md)."""

from __future__ import annotations

import ssl
from pathlib import Path

from slouchd.publish.settings import MqttSettings
from slouchd.schema import SettingsError


def read_password(settings: MqttSettings) -> str | None:
    """The broker password from ``password`` or the first line of ``password_file``.

    Raises:
        SettingsError: naming the file (never the password) when it cannot be read.
    """
    if settings.password_file:
        path = Path(settings.password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SettingsError(
                f'mqtt.password_file = "{path}": cannot read it ({err.strerror or type(err).__name__})'
            ) from None
        except UnicodeDecodeError:
            raise SettingsError(f'mqtt.password_file = "{path}": not UTF-8 text') from None
        return text.splitlines()[0] if text else ""
    return settings.password or None


def _no_key_passphrase() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise ssl.SSLError("the private key is encrypted; key_file must be an unencrypted PEM key")


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context for ``[mqtt] tls = true`` (None otherwise); hostnames are verified.

    Raises:
        SettingsError: naming the key and file that could not be loaded.
    """
    if not settings.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_file or None)
    except (OSError, ssl.SSLError) as err:
        raise SettingsError(f'mqtt.ca_file = "{settings.ca_file}": cannot load it as PEM '
                            f"certificates ({_ssl_reason(err)})") from None
    if settings.cert_file:
        try:
            ctx.load_cert_chain(settings.cert_file, settings.key_file, password=_no_key_passphrase)
        except (OSError, ssl.SSLError) as err:
            raise SettingsError(f'mqtt.cert_file = "{settings.cert_file}" / key_file = '
                                f'"{settings.key_file}": cannot load ({_ssl_reason(err)})') from None
    return ctx


def _ssl_reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err) or type(err).__name__
