"""Pluggable mail: an in-memory outbox for development and tests, SMTP for production."""

from __future__ import annotations

import logging
import smtplib
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from flask import Flask, current_app

log = logging.getLogger(__name__)
_EXT = "sv_mailer"


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


class SMTPMailer:
    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender

    def send(self, mail: Mail) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, mail.to, mail.subject
        msg.set_content(mail.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException):
            log.exception("mail delivery failed", extra={"subject": mail.subject})


def init_app(app: Flask) -> None:
    if app.config["MAIL_BACKEND"] == "smtp":
        app.extensions[_EXT] = SMTPMailer(app.config["SMTP_HOST"], app.config["SMTP_PORT"], app.config["MAIL_SENDER"])
    else:
        app.extensions[_EXT] = OutboxMailer()


def mailer() -> OutboxMailer | SMTPMailer:
    return current_app.extensions[_EXT]


def send(to: str, subject: str, body: str) -> None:
    mailer().send(Mail(to, subject, body))
