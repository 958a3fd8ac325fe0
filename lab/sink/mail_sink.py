#!/usr/bin/python3
"""The lab's mail sink (issue #18): the site's mail server as the lab's hosts see it.

An SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on ADDRESS:PORT that accepts every
message and appends it as one JSON line {"mail_from", "rcpt_tos", "headers", "subject",
"text"} to the file given as the first argument (`headers` and `subject` as written, RFC 2047
words decoded in `subject`; `text` the decoded body, lines ending in LF). The load balancer's msmtp relays to it
(site.yml, `mail_relay`), so a test reads what `announce` mailed through a real sendmail.

    mail_sink.py RECORD ADDRESS PORT
"""
import email
import email.policy
import json
import sys
import threading
import time

from aiosmtpd.controller import Controller

RECORD, ADDRESS, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
LOCK = threading.Lock()


class Record:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        entry = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "subject": str(msg["subject"] or ""),
            # SMTP's CRLF line ends are the transport's, not the text's.
            "text": body.get_content().replace("\r\n", "\n") if body is not None else "",
        }
        with LOCK, open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return "250 OK recorded"


def main():
    controller = Controller(Record(), hostname=ADDRESS, port=PORT)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
