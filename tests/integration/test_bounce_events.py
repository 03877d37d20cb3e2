"""Every failure event carries a bounce category and the SES-style type,
from the built-in rules or a `bounce-rules` file."""

from conftest import route_conf

GMAIL_NO_USER = ("550 5.1.1 The email account that you tried to reach does not exist. "
                 "Please try double-checking the recipient's email address for typos or "
                 "unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser")
GMAIL_QUOTA = ("452 4.2.2 The email account that you tried to reach is over quota. "
               "Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp")


def rcpt_reply(addr):
    if addr.startswith("gone"):
        return GMAIL_NO_USER
    if addr.startswith("full"):
        return GMAIL_QUOTA
    return None


def test_events_carry_category_and_ses_type(sluiced, receiver):
    rx = receiver(rcpt_reply=rcpt_reply)
    d = sluiced(route_conf(rx))
    d.send("", ["gone@dst.test", "full@dst.test", "ok@dst.test"],
           "Subject: t\r\n\r\nhello\r\n")
    b = d.wait_event("bounce", recipient="gone@dst.test")[0]
    assert b["category"] == "bad-mailbox"
    assert (b["ses_type"], b["ses_subtype"]) == ("Permanent", "NoEmail")
    t = d.wait_event("transient", recipient="full@dst.test")[0]
    assert t["category"] == "quota-issues"
    assert (t["ses_type"], t["ses_subtype"]) == ("Transient", "MailboxFull")
    ok = d.wait_event("delivery", recipient="ok@dst.test")[0]
    assert "category" not in ok


def test_custom_rules_file(sluiced, receiver, tmp_path):
    rules = tmp_path / "rules.conf"
    rules.write_text("# everything about unicorns is content\n"
                     "content-related code=5xx /unicorn/\n")
    rx = receiver(rcpt_reply=lambda a: "554 5.7.1 no unicorns allowed here")
    d = sluiced(route_conf(rx) + "bounce-rules %s\n" % rules)
    d.send("", ["x@dst.test"], "Subject: t\r\n\r\nhello\r\n")
    b = d.wait_event("bounce", recipient="x@dst.test")[0]
    assert b["category"] == "content-related"
    assert b["ses_type"] == "Transient" and b["ses_subtype"] == "ContentRejected"


def test_bad_rules_file_is_a_config_error(sluiced_bin, tmp_path):
    import subprocess
    rules = tmp_path / "rules.conf"
    rules.write_text("not-a-category /x/\n")
    conf = tmp_path / "s.conf"
    conf.write_text("hostname t\nbounce-rules %s\n" % rules)
    out = subprocess.run([sluiced_bin[0], "-n", "-c", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "%s:2: bounce-rules: %s:1:" % (conf, rules) in out.stderr
