"""Pluggable mail: an in-memory outbox for development and tests, SMTP for production.

SMTP speaks STARTTLS (submission, port 587: Amazon SES, most relays) or implicit TLS (port 465), verifies the
server's certificate against the system CAs or ``SMTP_CA_FILE``, and logs in when ``SMTP_USERNAME`` is set.
``SMTP_SECURITY=none`` (plain text) exists for local sinks only; production refuses it (``config.production_problems``).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from flask import Flask, current_app

log = logging.getLogger(__name__)
_EXT = "sv_mailer"
SECURITY_MODES = ("starttls", "tls", "none")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class OutboxMailer:
    """Keeps messages in memory (``outbox``); never logs their bodies, which may carry reset links."""

    def __init__(self) -> None:
        self.outbox: list[Mail] = []
        self._lock = threading.Lock()

    def send(self, mail: Mail) -> None:
        with self._lock:
            self.outbox.append(mail)
        log.info("mail queued to outbox", extra={"subject": mail.subject})


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    sender: str
    security: str = "starttls"  # starttls | tls | none
    username: str = ""
    password: str = ""
    timeout: float = 10.0
    ca_file: str = ""  # verify the server against this CA bundle instead of the system store

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


class SMTPMailer:
    def __init__(self, settings: SMTPSettings) -> None:
        if settings.security not in SECURITY_MODES:
            raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, not {settings.security!r}")
        self.settings = settings

    def send(self, mail: Mail) -> None:
        """Deliver one message; a failure is logged (never the body) and swallowed, as the caller answers the
        same whether or not mail went out (no account enumeration)."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.settings.sender, mail.to, mail.subject
        msg.set_content(mail.body)
        try:
            with self._connect() as smtp:
                if self.settings.username:
                    smtp.login(self.settings.username, self.settings.password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("mail delivery failed", extra={"subject": mail.subject, "error_type": type(exc).__name__})
            return
        log.info("mail sent", extra={"subject": mail.subject})

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=s.tls_context())
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        if s.security == "starttls":
            try:
                smtp.starttls(context=s.tls_context())  # raises SMTPNotSupportedError if the server lacks it
            except BaseException:
                smtp.close()
                raise
        return smtp


def smtp_settings(config: dict) -> SMTPSettings:
    return SMTPSettings(
        host=config["SMTP_HOST"],
        port=int(config["SMTP_PORT"]),
        sender=config["MAIL_SENDER"],
        security=config.get("SMTP_SECURITY", "starttls"),
        username=config.get("SMTP_USERNAME") or "",
        password=config.get("SMTP_PASSWORD") or "",
        timeout=float(config.get("SMTP_TIMEOUT", 10)),
        ca_file=config.get("SMTP_CA_FILE") or "",
    )


def init_app(app: Flask) -> None:
    if app.config["MAIL_BACKEND"] == "smtp":
        app.extensions[_EXT] = SMTPMailer(smtp_settings(app.config))
    else:
        app.extensions[_EXT] = OutboxMailer()


def mailer() -> OutboxMailer | SMTPMailer:
    return current_app.extensions[_EXT]


def send(to: str, subject: str, body: str) -> None:
    mailer().send(Mail(to, subject, body))
