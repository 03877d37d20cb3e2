/*
 * bounce: classification of remote replies into bounce categories.
 *
 * A rule set is an array of compiled rules tried in file order; the first
 * whose matchers all match names the category. Cheap matchers (basic code,
 * enhanced status) are checked before the regex so most rules cost two
 * integer compares. Regexes are compiled once, REG_EXTENDED | REG_ICASE |
 * REG_NOSUB; a loaded set is never written again, and glibc's regexec() on a
 * shared regex_t is thread-safe, so workers classify concurrently.
 *
 * When no rule matches, the enhanced status decides by its RFC 3463 subject
 * and detail (fallback_category()), and "other" when there is none: a new
 * provider text still lands in a sensible category before anyone writes a
 * rule for it.
 *
 * bounce_rules_builtin[] is conf/bounce-rules.conf, byte for byte
 * (test_bounce.c compares them). After editing the file, regenerate it with
 *   sed 's/\\/\\\\/g; s/"/\\"/g; s/^/\t"/; s/$/\\n"/' conf/bounce-rules.conf
 * and paste the output between the braces below.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "reply_match.h"
#include "util.h"

enum category {
	CAT_BAD_MAILBOX,
	CAT_BAD_DOMAIN,
	CAT_INACTIVE_MAILBOX,
	CAT_QUOTA_ISSUES,
	CAT_MESSAGE_TOO_LARGE,
	CAT_SPAM_RELATED,
	CAT_CONTENT_RELATED,
	CAT_POLICY_RELATED,
	CAT_VIRUS_RELATED,
	CAT_ROUTING_ERRORS,
	CAT_BAD_CONNECTION,
	CAT_NO_ANSWER_FROM_HOST,
	CAT_PROTOCOL_ERRORS,
	CAT_RELAYING_ISSUES,
	CAT_INVALID_SENDER,
	CAT_BAD_CONFIGURATION,
	CAT_MESSAGE_EXPIRED,
	CAT_OTHER,
	CAT_COUNT
};

static const char *const cat_names[CAT_COUNT] = {
	[CAT_BAD_MAILBOX] = "bad-mailbox",
	[CAT_BAD_DOMAIN] = "bad-domain",
	[CAT_INACTIVE_MAILBOX] = "inactive-mailbox",
	[CAT_QUOTA_ISSUES] = "quota-issues",
	[CAT_MESSAGE_TOO_LARGE] = "message-too-large",
	[CAT_SPAM_RELATED] = "spam-related",
	[CAT_CONTENT_RELATED] = "content-related",
	[CAT_POLICY_RELATED] = "policy-related",
	[CAT_VIRUS_RELATED] = "virus-related",
	[CAT_ROUTING_ERRORS] = "routing-errors",
	[CAT_BAD_CONNECTION] = "bad-connection",
	[CAT_NO_ANSWER_FROM_HOST] = "no-answer-from-host",
	[CAT_PROTOCOL_ERRORS] = "protocol-errors",
	[CAT_RELAYING_ISSUES] = "relaying-issues",
	[CAT_INVALID_SENDER] = "invalid-sender",
	[CAT_BAD_CONFIGURATION] = "bad-configuration",
	[CAT_MESSAGE_EXPIRED] = "message-expired",
	[CAT_OTHER] = "other",
};


struct rule {
	enum category cat;
	int line;
	struct reply_match m;           /* code=, status=, /regex/ */
};

struct bounce_rules {
	struct rule *v;
	size_t n;
};

const char bounce_rules_builtin[] = {
	"# sluice bounce classification rules.\n"
	"#\n"
	"# Every non-2xx reply from a remote server (and every failure sluice\n"
	"# synthesises itself: connect errors, timeouts, DNS) is classified into one\n"
	"# category. The category goes into the accounting event together with the\n"
	"# SES-style type (Permanent/Transient/Undetermined) and subtype.\n"
	"#\n"
	"# Syntax: one rule per line,\n"
	"#\n"
	"#     CATEGORY  [code=PATTERN]  [status=PATTERN]  [/REGEX/]\n"
	"#\n"
	"#   code=     the basic reply code: three characters, each a digit or \"x\"\n"
	"#             (\"550\", \"55x\", \"5xx\").\n"
	"#   status=   the enhanced status code: \"X.Y.Z\", \"X.Y.*\" or \"X.*\"\n"
	"#             (\"5.1.1\", \"5.7.*\", \"4.*\"). A reply without one never matches.\n"
	"#   /REGEX/   a POSIX extended regular expression, case-insensitive, searched\n"
	"#             in the reply text (the text without the code and the enhanced\n"
	"#             code; the lines of a multi-line reply are joined with \" / \").\n"
	"#             The regex runs from the first \"/\" to the last \"/\" of the line,\n"
	"#             so it may contain \"/\" and spaces; it comes after the other\n"
	"#             matchers and nothing but blanks may follow it.\n"
	"#\n"
	"# A rule needs at least one matcher; all its matchers must match. Rules are\n"
	"# tried in order and the first match wins, so specific rules come before\n"
	"# general ones (sender problems before recipient problems: \"Sender address\n"
	"# rejected: User unknown\" is about the sender). A line whose first non-blank\n"
	"# character is \"#\" is a comment; blank lines are ignored.\n"
	"#\n"
	"# When no rule matches, sluice falls back on the enhanced status code\n"
	"# (RFC 3463 subjects: X.1.1 bad-mailbox, X.1.2 bad-domain, X.2.2\n"
	"# quota-issues, X.3.4 message-too-large, X.4.1 no-answer-from-host, X.4.2\n"
	"# bad-connection, X.4.7 message-expired, X.5.* protocol-errors, X.6.*\n"
	"# content-related, X.7.* policy-related, ...) and then on \"other\".\n"
	"#\n"
	"# Categories: bad-mailbox bad-domain inactive-mailbox quota-issues\n"
	"# message-too-large spam-related content-related policy-related\n"
	"# virus-related routing-errors bad-connection no-answer-from-host\n"
	"# protocol-errors relaying-issues invalid-sender bad-configuration\n"
	"# message-expired other\n"
	"#\n"
	"# The built-in rules (used when sluice.conf has no \"bounce-rules FILE\") are\n"
	"# a copy of this file compiled into sluiced.\n"
	"#\n"
	"# Above each rule: a real reply it is meant for.\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Gmail / Google Workspace\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550-5.1.1 The email account that you tried to reach does not exist. Please\n"
	"# try double-checking the recipient's email address for typos or unnecessary\n"
	"# spaces. Learn more at https://support.google.com/mail/?p=NoSuchUser\n"
	"bad-mailbox       /account that you tried to reach does not exist/\n"
	"# 550-5.2.1 The email account that you tried to reach is disabled. Learn more\n"
	"# at https://support.google.com/mail/?p=DisabledUser\n"
	"inactive-mailbox  /account that you tried to reach is (disabled|inactive)/\n"
	"# 552-5.2.2 The email account that you tried to reach is over quota. Please\n"
	"# direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm\n"
	"# 452-4.2.2 The email account that you tried to reach is over quota. Please\n"
	"# direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp\n"
	"quota-issues      /account that you tried to reach is over quota/\n"
	"# 450-4.2.1 The user you are trying to contact is receiving mail too quickly.\n"
	"# Please resend your message at a later time.\n"
	"# 450-4.2.1 The user you are trying to contact is receiving mail at a rate\n"
	"# that prevents additional messages from being delivered.\n"
	"policy-related    /user you are trying to contact is receiving mail (too quickly|at a rate)/\n"
	"# 553-5.1.2 We weren't able to find the recipient domain. Please check for any\n"
	"# spelling errors, and make sure you didn't enter any spaces, periods, or other\n"
	"# punctuation after the recipient's email address.\n"
	"bad-domain        /able to find the recipient domain/\n"
	"# 552-5.3.4 Your message exceeded Google's message size limits. Please visit\n"
	"# https://support.google.com/mail/?p=MaxSizeError to view our size guidelines.\n"
	"message-too-large /exceeded Google's message size limits/\n"
	"# 552-5.7.0 This message was blocked because its content presents a potential\n"
	"# security issue. Please visit https://support.google.com/mail/?p=BlockedMessage\n"
	"virus-related     /content presents a potential security issue/\n"
	"# 550-5.7.1 Our system has detected an unusual rate of unsolicited mail\n"
	"# originating from your IP address. To protect our users from spam, mail sent\n"
	"# from your IP address has been blocked.\n"
	"# 421-4.7.28 Our system has detected an unusual rate of unsolicited mail\n"
	"# originating from your IP address. To protect our users from spam, mail sent\n"
	"# from your IP address has been temporarily rate limited.\n"
	"spam-related      /unusual rate of unsolicited mail/\n"
	"# 550-5.7.1 Our system has detected that this message is likely unsolicited\n"
	"# mail. To reduce the amount of spam sent to Gmail, this message has been\n"
	"# blocked.\n"
	"# 421-4.7.0 Our system has detected that this message is suspicious due to the\n"
	"# very low reputation of the sending domain.\n"
	"spam-related      /(this message is likely unsolicited mail|very low reputation of the sending)/\n"
	"# 550-5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
	"# Gmail requires all senders to authenticate with either SPF or DKIM.\n"
	"# (Yahoo sends the same text with \"Yahoo requires\".)\n"
	"policy-related    /blocked because the sender is unauthenticated/\n"
	"# 550-5.7.26 Unauthenticated email from example.com is not accepted due to\n"
	"# domain's DMARC policy. Please contact the administrator of example.com domain\n"
	"# if this was a legitimate mail.\n"
	"policy-related    /not accepted due to domain's DMARC policy/\n"
	"# 421-4.7.0 This message does not have authentication information or fails to\n"
	"# pass authentication checks (SPF or DKIM).\n"
	"policy-related    /does not have authentication information or fails to pass/\n"
	"# 550-5.7.25 The IP address sending this message does not have a PTR record\n"
	"# setup, or the corresponding forward DNS entry does not point to the sending\n"
	"# IP.\n"
	"policy-related    /does not have a PTR record setup/\n"
	"# 550-5.7.1 The user or domain that you are sending to (or from) has a policy\n"
	"# that prohibited the mail that you sent.\n"
	"policy-related    /has a policy that prohibited the mail/\n"
	"# 550-5.7.1 Messages missing a valid address in From: header, or having no\n"
	"# From: header, are not accepted.\n"
	"content-related   /missing a valid address in From: header/\n"
	"# 554-5.6.0 Message exceeded 50 hops, this may indicate a mail loop.\n"
	"routing-errors    /exceeded [0-9]+ hops/\n"
	"# 421-4.7.0 Try again later, closing connection. This usually indicates a\n"
	"# Denial of Service (DoS) for the SMTP relay at the HELO stage.\n"
	"policy-related    code=421 /Try again later, closing connection/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Microsoft: Outlook.com, Hotmail, Exchange Online (EOP)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please\n"
	"# contact your Internet service provider since part of their network is on our\n"
	"# block list (S3150). You can also refer your provider to\n"
	"# http://mail.live.com/mail/troubleshooting.aspx#errors.\n"
	"# (S3140: the same for a single address.)\n"
	"spam-related      /on our block list \\(S[0-9]+\\)/\n"
	"# 550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using\n"
	"# Spamhaus. To request removal from this list see\n"
	"# https://www.spamhaus.org/query/ip/192.0.2.1 (AS3130).\n"
	"# Postfix's and Barracuda's DNSBL rejections read the same way.\n"
	"spam-related      /Client host \\[[^]]*\\] blocked using/\n"
	"# 550 5.7.708 Service unavailable. Access denied, traffic not accepted from\n"
	"# this IP. For more information please go to\n"
	"# http://go.microsoft.com/fwlink/?LinkId=526653\n"
	"spam-related      status=5.7.708\n"
	"# 550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal\n"
	"# from this list please visit https://sender.office.com/ and follow the\n"
	"# directions.\n"
	"spam-related      status=5.7.606\n"
	"# 550 5.7.705 Access denied, tenant has exceeded threshold.\n"
	"spam-related      status=5.7.705\n"
	"# 451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due\n"
	"# to IP reputation.\n"
	"spam-related      /rate limited due to IP reputation/\n"
	"# 451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)\n"
	"# [DM6NAM10FT011.eop-nam10.prod.protection.outlook.com]\n"
	"policy-related    /Server busy\\. Please try again later/\n"
	"# 550 5.7.750 Service unavailable. Client blocked from sending from unregistered\n"
	"# domains.\n"
	"policy-related    status=5.7.750\n"
	"# 550 5.7.509 Access denied, sending domain [EXAMPLE.COM] does not pass DMARC\n"
	"# verification and has a DMARC policy of reject.\n"
	"policy-related    /does not pass DMARC verification/\n"
	"# 550 5.7.515 Access denied, sending domain [EXAMPLE.COM] does not meet the\n"
	"# required authentication level.\n"
	"policy-related    /does not meet the required authentication level/\n"
	"# 550 5.7.520 Access denied, Your organization does not allow external\n"
	"# forwarding.\n"
	"policy-related    /does not allow external forwarding/\n"
	"# 550 5.7.1 RESOLVER.RST.AuthRequired; authentication required\n"
	"# 550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication\n"
	"# required\n"
	"policy-related    /RESOLVER\\.RST\\./\n"
	"# 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP\n"
	"# address lookup\n"
	"# 550 5.1.1 RESOLVER.ADR.RecipNotFound; not found\n"
	"bad-mailbox       /RESOLVER\\.ADR\\.Recip(ient)?NotFound/\n"
	"# 550 5.4.1 Recipient address rejected: Access denied. AS(201806281)\n"
	"# [DM6NAM10FT012.eop-nam10.prod.protection.outlook.com]\n"
	"# (directory-based edge blocking: the recipient does not exist in the tenant)\n"
	"bad-mailbox       status=5.4.1 /Recipient address rejected: Access denied/\n"
	"# 550 5.4.310 DNS domain example.com does not exist [Message=InfoDomainNonexistent]\n"
	"bad-domain        /DNS domain .* does not exist/\n"
	"# 554 5.4.14 Hop count exceeded - possible mail loop ATTR34\n"
	"routing-errors    /Hop count exceeded/\n"
	"# 554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.\n"
	"# MapiExceptionShutoffQuotaExceeded\n"
	"quota-issues      /QuotaExceededException/\n"
	"# 554 5.6.211 Invalid MIME Content: Single text value size (32780) exceeded\n"
	"# allowed maximum (32768) for the 'Subject' property.\n"
	"content-related   /Invalid MIME Content/\n"
	"# 550 5.7.60 SMTP; Client does not have permissions to send as this sender\n"
	"invalid-sender    /does not have permissions to send as this sender/\n"
	"# 550 5.7.64 TenantAttribution; Relay Access Denied\n"
	"relaying-issues   /TenantAttribution; Relay Access Denied/\n"
	"# 550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain\n"
	"relaying-issues   /Unable to relay recipient in non-accepted domain/\n"
	"# 421 4.3.2 The maximum number of concurrent server connections has exceeded a\n"
	"# limit, closing transmission channel\n"
	"policy-related    /maximum number of concurrent (server )?connections/\n"
	"# 550 5.5.0 Requested action not taken: mailbox unavailable\n"
	"# (S2017062302) [BN8NAM12FT042.eop-nam12.prod.protection.outlook.com]\n"
	"# 550 Requested action not taken: mailbox unavailable (GMX, web.de, older\n"
	"# Hotmail)\n"
	"bad-mailbox       /Requested action not taken: mailbox unavailable/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Yahoo, AOL (Yahoo Inc. infrastructure)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user\n"
	"# complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes\n"
	"# 421 4.7.0 [TS02] Messages from 192.0.2.1 temporarily deferred due to\n"
	"# unexpected volume or user complaints - 4.16.56.1; see\n"
	"# https://postmaster.yahooinc.com/error-codes\n"
	"# 421 4.7.0 [TS03] All messages from 192.0.2.1 will be permanently deferred;\n"
	"# Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes\n"
	"# 421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to\n"
	"# unexpected volume or user complaints - 4.16.55.1; see\n"
	"# https://postmaster.yahooinc.com/error-codes\n"
	"# 553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred;\n"
	"# Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes\n"
	"spam-related      /\\[TSS?[0-9]+\\]/\n"
	"# 421 4.7.0 [GL01] Message from (192.0.2.1) temporarily deferred - 4.16.50.\n"
	"# Please refer to https://postmaster.yahooinc.com/error-codes\n"
	"spam-related      /\\[GL0[0-9]\\]/\n"
	"# 553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because\n"
	"# the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes\n"
	"spam-related      /\\[BL[0-9]+\\]/\n"
	"# 554 delivery error: dd This user doesn't have a yahoo.com account\n"
	"# (someone@yahoo.com) [0] - mta4012.mail.bf1.yahoo.com\n"
	"# 554 delivery error: dd This user doesn't have a aol.com account\n"
	"# (someone@aol.com) [0] - mta1153.mail.gq1.yahoo.com\n"
	"bad-mailbox       /This user doesn't have an? [^ ]+ account/\n"
	"# 554 delivery error: dd This account has been disabled or discontinued\n"
	"# [#102]. - mta1001.mail.ne1.yahoo.com\n"
	"inactive-mailbox  /account has been disabled or discontinued/\n"
	"# 554 delivery error: dd Sorry, your message to someone@yahoo.com cannot be\n"
	"# delivered. This mailbox is disabled (554.30). - mta1075.mail.bf1.yahoo.com\n"
	"inactive-mailbox  /This mailbox is disabled/\n"
	"# 552 1 Requested mail action aborted, mailbox not found\n"
	"bad-mailbox       /Requested mail action aborted, mailbox not found/\n"
	"# 451 Message temporarily deferred - [160]\n"
	"policy-related    /Message temporarily deferred - \\[[0-9]+\\]/\n"
	"# 554 Message not allowed - [PH01] Email not accepted for policy reasons.\n"
	"# Please visit https://postmaster.yahooinc.com/error-codes\n"
	"policy-related    /Email not accepted for policy reasons/\n"
	"# 554 5.7.9 Message not accepted for policy reasons.  See\n"
	"# https://postmaster.yahooinc.com/error-codes\n"
	"policy-related    /Message not accepted for policy reasons/\n"
	"# 554- (RTR:BB) The IP address you are using to connect to AOL is a dynamic\n"
	"# (residential) IP address. AOL will not accept future e-mail transactions\n"
	"# from this IP address until your ISP removes the dynamic/residential\n"
	"# designation.\n"
	"# 421 DYN:T1 http://postmaster.info.aol.com/errors/421dynt1.html\n"
	"policy-related    /\\((RTR|RLY|DYN|DNS):[A-Z0-9]+\\)|(^| )(DYN|RTR|RLY):[A-Z0-9]+ /\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Apple iCloud (icloud.com, me.com, mac.com)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 5.1.1 <someone@icloud.com>: inactive email address\n"
	"inactive-mailbox  /inactive email address/\n"
	"# 550 5.1.1 <someone@icloud.com>: user does not exist\n"
	"bad-mailbox       /user does not exist/\n"
	"# 552 5.2.2 <someone@icloud.com>: user is over quota\n"
	"# 452 4.2.2 <someone@icloud.com>: user is over quota\n"
	"quota-issues      /user is over quota/\n"
	"# 554 5.7.1 [CS01] Message rejected due to local policy. Please visit\n"
	"# https://support.apple.com/en-us/HT204137\n"
	"# 550 5.7.1 [HM08] Message rejected due to local policy. Please visit\n"
	"# https://support.apple.com/en-us/HT204137\n"
	"spam-related      /\\[(CS|HM)[0-9]+\\] Message rejected/\n"
	"# 421 4.7.0 [IR01] Service temporarily unavailable, please try again later.\n"
	"# https://support.apple.com/en-us/HT204137\n"
	"policy-related    /\\[IR[0-9]+\\]/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Comcast (comcast.net)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 5.1.1 <someone@comcast.net> Not our Customer\n"
	"bad-mailbox       /Not our Customer/\n"
	"# 554 resimta-po-20v.sys.comcast.net comcast 192.0.2.1 Comcast BL004 Blocked\n"
	"# for spam.  Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000004\n"
	"spam-related      /Comcast BL[0-9]+ /\n"
	"# 554 resimta-ch2-05v.sys.comcast.net comcast 192.0.2.1 Comcast requires that\n"
	"# all mail servers must have a PTR record with a valid Reverse DNS entry.\n"
	"# Currently your mail server does not fulfill this requirement. For more\n"
	"# information, refer to: http://postmaster.comcast.net/smtp-error-codes.php#554\n"
	"policy-related    /must have a PTR record with a valid Reverse DNS entry/\n"
	"# 421 resimta-h1p-028597.sys.comcast.net comcast 192.0.2.1 Comcast RL000001\n"
	"# Too many sessions are opened from 192.0.2.1. For more information, refer to:\n"
	"# http://postmaster.comcast.net/smtp-error-codes.php#RL000001\n"
	"policy-related    /Comcast RL[0-9]+/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# GMX, web.de (1&1 mail platform)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 554-gmx.net (mxgmx117) Nemesis ESMTP Service not available\n"
	"# 554-No SMTP service\n"
	"# 554-Bad DNS PTR resource record.\n"
	"# 554 For explanation visit https://postmaster.gmx.net/en/case?c=r0302&i=ip&v=192.0.2.1&r=...\n"
	"policy-related    /Bad DNS PTR resource record/\n"
	"# 554-gmx.net (mxgmx014) Nemesis ESMTP Service not available\n"
	"# 554-No SMTP service\n"
	"# 554-IP address is block listed.\n"
	"# 554 For explanation visit https://postmaster.gmx.net/en/case?c=r0701&i=ip&v=192.0.2.1&r=...\n"
	"spam-related      /IP address is (block|black) ?listed/\n"
	"# 554-Transaction failed\n"
	"# 554-Reject due to policy restrictions.\n"
	"# 554 For explanation visit https://postmaster.web.de/en/case?c=hi&i=ip&v=192.0.2.1&r=...\n"
	"# 421-Service unavailable\n"
	"# 421-Reject due to temporary policy restrictions.\n"
	"policy-related    /Reject due to (temporary )?policy restrictions/\n"
	"# 552 Requested mail action aborted: exceeded mailsize limit\n"
	"message-too-large /exceeded mailsize limit/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Mail.ru (mail.ru, bk.ru, inbox.ru, list.ru)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 Message was not accepted -- invalid mailbox.  Local mailbox\n"
	"# someone@mail.ru is unavailable: account is disabled\n"
	"# 550 Message was not accepted -- invalid mailbox.  Local mailbox\n"
	"# someone@mail.ru is unavailable: user is terminated\n"
	"inactive-mailbox  /is unavailable: (account is disabled|user is terminated)/\n"
	"# 550 Message was not accepted -- invalid mailbox.  Local mailbox\n"
	"# someone@mail.ru is unavailable: user not found\n"
	"bad-mailbox       /Message was not accepted -- invalid mailbox/\n"
	"# 550 spam message rejected. Please visit\n"
	"# http://help.mail.ru/notspam-support/id?c=... or report details to\n"
	"# abuse@corp.mail.ru. Error code: ...\n"
	"spam-related      /spam message rejected/\n"
	"# 421 ratelimit exceeded; try again later (mxs.mail.ru)\n"
	"policy-related    /ratelimit/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Yandex (yandex.ru, ya.ru)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 5.7.1 No such user!\n"
	"bad-mailbox       /No such user!/\n"
	"# 554 5.7.1 [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc\n"
	"# 1693238520-abcdef\n"
	"spam-related      /rejected under suspicion of SPAM/\n"
	"# 554 5.7.1 Message rejected under suspicion of virus\n"
	"virus-related     /rejected under suspicion of virus/\n"
	"# 550 5.7.1 Policy rejection on the target address\n"
	"policy-related    /Policy rejection on the target address/\n"
	"# 451 4.7.1 Sorry, the service is currently unavailable. Please come back\n"
	"# later. 1693238520-abcdef\n"
	"policy-related    /the service is currently unavailable\\. Please come back later/\n"
	"# 552 5.2.2 Mailbox size limit exceeded\n"
	"quota-issues      /Mailbox size limit exceeded/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Proofpoint (on-premise and Essentials)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1\n"
	"# 521 5.7.1 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1\n"
	"spam-related      /ipcheck\\.proofpoint\\.com/\n"
	"# 550 5.7.1 Message rejected by Proofpoint: Message blocked due to spam content\n"
	"spam-related      /Message blocked due to spam/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Mimecast\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550\n"
	"# [Bq-2m0kcNDeEAvGJ6dDx2w.uk51]\n"
	"bad-mailbox       /Invalid Recipient - /\n"
	"# 550 Rejected by header based Anti-Spoofing policy: someone@example.com -\n"
	"# https://community.mimecast.com/docs/DOC-1369#550 [abc.us123]\n"
	"policy-related    /Anti-Spoofing policy/\n"
	"# 550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550\n"
	"# 550 Rejected by header-based Blocked Senders - Block policy for Header From -\n"
	"# https://community.mimecast.com/docs/DOC-1369#550\n"
	"policy-related    /(Envelope blocked - |Blocked Senders)/\n"
	"# 554 Email rejected due to security policies -\n"
	"# https://community.mimecast.com/docs/DOC-1369#554\n"
	"policy-related    /Email rejected due to security policies/\n"
	"# 451 Open relay not allowed - https://community.mimecast.com/docs/DOC-1369#451\n"
	"relaying-issues   /Open relay not allowed/\n"
	"# 554 Maximum email size exceeded - https://community.mimecast.com/docs/DOC-1369#554\n"
	"message-too-large /Maximum email size exceeded/\n"
	"# 451 Internal resource temporarily unavailable -\n"
	"# https://community.mimecast.com/docs/DOC-1369#451\n"
	"other             /Internal resource temporarily unavailable/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Barracuda (appliance and Email Security Service)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# (554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using\n"
	"# Barracuda Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.1\n"
	"# is spam-related by the \"Client host [...] blocked using\" rule above.)\n"
	"# 550 permanent failure for one or more recipients (someone@example.com:blocked)\n"
	"spam-related      /permanent failure for one or more recipients \\([^)]*:blocked\\)/\n"
	"# 550 No such user (someone@example.com)\n"
	"bad-mailbox       /No such user \\(/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Postfix defaults (smtpd restrictions, local/virtual delivery, Dovecot LMTP)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 450 4.1.8 <bounce@example.com>: Sender address rejected: Domain not found\n"
	"# 550 5.1.0 <bounce@example.com>: Sender address rejected: User unknown in\n"
	"# local recipient table\n"
	"# 553 5.7.1 <bounce@example.com>: Sender address rejected: not owned by user bob\n"
	"invalid-sender    /Sender address rejected: (Domain not found|User unknown|not owned|need fully-qualified|Malformed)/\n"
	"# 554 5.7.1 <bounce@example.com>: Sender address rejected: Access denied\n"
	"policy-related    /Sender address rejected: Access denied/\n"
	"# 554 5.7.1 <someone@example.net>: Relay access denied\n"
	"relaying-issues   /Relay access denied/\n"
	"# 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in\n"
	"# local recipient table\n"
	"# 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in\n"
	"# virtual mailbox table\n"
	"# 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in\n"
	"# virtual alias table\n"
	"bad-mailbox       /User unknown in (local recipient|virtual mailbox|virtual alias|relay recipient) table/\n"
	"# 450 4.1.1 <someone@example.com>: Recipient address rejected: unverified\n"
	"# address: host mx.example.com[192.0.2.9] said: 550 5.1.1 User unknown\n"
	"bad-mailbox       /Recipient address rejected: undeliverable address|unverified address: .*(unknown|not found|does not exist)/\n"
	"# 450 4.1.2 <someone@example.invalid>: Recipient address rejected: Domain not\n"
	"# found\n"
	"bad-domain        /Recipient address rejected: Domain not found/\n"
	"# 450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see\n"
	"# http://postgrey.schweikert.ch/help/example.com.html\n"
	"policy-related    /Greylist/\n"
	"# 450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]\n"
	"# 450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]\n"
	"policy-related    /Client host rejected: cannot find your (reverse )?hostname/\n"
	"# 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname\n"
	"# 550 5.7.1 <localhost>: Helo command rejected: Host not found\n"
	"bad-configuration /Helo command rejected/\n"
	"# 550 5.7.23 <someone@example.com>: Recipient address rejected: Message\n"
	"# rejected due to: SPF fail - not authorized. Please see\n"
	"# http://www.openspf.net/Why?s=mfrom;id=bounce@example.com;ip=192.0.2.1;r=mx.example.com\n"
	"policy-related    /SPF (fail|check failed)|openspf\\.net|open-spf\\.org/\n"
	"# 421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1\n"
	"policy-related    /too many connections from/\n"
	"# 421 4.4.2 mx.example.com Error: timeout exceeded\n"
	"bad-connection    /Error: timeout exceeded/\n"
	"# 552 5.3.4 Message size exceeds fixed limit\n"
	"# 552 5.3.4 Message size exceeds fixed maximum message size (Microsoft)\n"
	"message-too-large /Message size exceeds fixed (limit|maximum)/\n"
	"# 552 5.2.2 <someone@example.com> Quota exceeded (mailbox for user is full)\n"
	"# (Dovecot LMTP)\n"
	"quota-issues      /Quota exceeded \\(mailbox for user is full\\)/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# Exim defaults (and cPanel's Exim)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 550-Verification failed for <bounce@example.com>\n"
	"# 550-Unrouteable address\n"
	"# 550 Sender verify failed\n"
	"invalid-sender    /Sender verify failed|Could not complete sender verify/\n"
	"# 550 Unrouteable address\n"
	"bad-mailbox       /Unrouteable address/\n"
	"# 550 No Such User Here\n"
	"bad-mailbox       /No Such User Here/\n"
	"# 550 relay not permitted\n"
	"relaying-issues   /relay not permitted/\n"
	"# 550 rejected because 192.0.2.1 is in a black list at zen.spamhaus.org\n"
	"spam-related      /is in a black ?list at/\n"
	"# 550 Administrative prohibition\n"
	"policy-related    /Administrative prohibition/\n"
	"# 552 Message size exceeds maximum permitted\n"
	"message-too-large /Message size exceeds maximum permitted/\n"
	"# 421 Too many concurrent SMTP connections; please try again later.\n"
	"policy-related    /Too many concurrent SMTP connections/\n"
	"# 554 SMTP synchronization error\n"
	"protocol-errors   /SMTP synchronization error/\n"
	"# 421 mx.example.com: SMTP incoming data timeout - closing connection.\n"
	"bad-connection    /SMTP incoming data timeout/\n"
	"# 451 Temporary local problem - please try later\n"
	"other             code=451 /Temporary local problem/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# sluice's own replies (synthesised for failures without a remote reply)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 451 4.7.5 TLS handshake with mx.example.com[192.0.2.9] failed: ...\n"
	"# 451 4.7.5 certificate of mx.example.com[192.0.2.9] not trusted: ...\n"
	"bad-connection    status=4.7.5 /TLS handshake with|TLS setup|not trusted/\n"
	"# 451 4.7.4 TLS required but not offered by mx.example.com[192.0.2.9]\n"
	"policy-related    status=4.7.4 /TLS required but not offered/\n"
	"# 451 4.7.0 mx.example.com[192.0.2.9] does not offer AUTH PLAIN\n"
	"bad-configuration /does not offer AUTH/\n"
	"\n"
	"# ---------------------------------------------------------------------------\n"
	"# General texts, any provider (after the specific rules above)\n"
	"# ---------------------------------------------------------------------------\n"
	"\n"
	"# 451 4.4.1 connect to mx.example.com[192.0.2.9]:25: Connection refused\n"
	"# 451 4.4.1 connect to mx.example.com[192.0.2.9]:25 timed out\n"
	"no-answer-from-host /connect to .*(Connection refused|No route to host|Network is unreachable|timed out)/\n"
	"# 451 4.4.2 connection with mx.example.com[192.0.2.9] reset during DATA\n"
	"# 421 4.4.2 Connection dropped\n"
	"bad-connection    /connection (with .* )?(lost|reset|dropped|closed|timed out)|lost connection|broken pipe/\n"
	"# 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using\n"
	"# zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1\n"
	"# 550 5.7.1 Mail from 192.0.2.1 refused - listed on bl.spamcop.net\n"
	"spam-related      /blocked using|listed (on|at|in) [a-z0-9.-]+\\.[a-z]+|spamhaus|spamcop|blacklist|blocklist|block list|dnsbl/\n"
	"# 550 5.7.1 Message rejected as spam by Content Filtering.\n"
	"# 554 5.7.1 This message has been blocked because it contains spam.\n"
	"spam-related      /(as|is|be|looks like|identified as|classified as|considered|suspected|contains|because of) (\\[?probable\\]? |likely )?spam|spam (detected|score|content|message)|unsolicited|bulk mail/\n"
	"# 554 5.7.1 The message contains a virus (Eicar-Test-Signature)\n"
	"# 550 5.7.1 Message infected with a virus\n"
	"virus-related     /virus|malware|infected|trojan|phishing|dangerous attachment/\n"
	"# 552 5.7.0 Our system detected an illegal attachment on your message.\n"
	"# 554 5.6.1 Attachment type not allowed (.exe)\n"
	"content-related   /attachment|banned file|file type|content (rejected|not allowed|filter)|message content/\n"
	"# 552 5.2.2 Mailbox full\n"
	"# 452 4.2.2 Over quota\n"
	"# 552 5.2.2 Mailbox quota exceeded\n"
	"quota-issues      /mailbox (is )?full|over ?quota|quota (exceeded|exceed)|exceeded (the )?(storage|quota)|insufficient (storage|space)|mailbox size/\n"
	"# 552 5.3.4 Message too big for system\n"
	"# 552 5.2.3 Message length exceeds administrative limit\n"
	"message-too-large /(message|mail) (is )?too (big|large)|size (limit )?exceed|exceeds (the )?(maximum|size|administrative)|message length exceeds/\n"
	"# 550 5.2.1 <someone@example.com>: Mailbox disabled for this recipient\n"
	"# 550 5.2.1 This mailbox has been suspended\n"
	"inactive-mailbox  /(mailbox|account|user) (is |has been )?(disabled|deactivated|inactive|suspended|expired|closed|locked)|(inactive|disabled|suspended|expired) (user|mailbox|account)/\n"
	"# 553 5.1.8 <bounce@example.com>: Sender address domain does not exist\n"
	"# 550 5.7.1 Sender address rejected\n"
	"invalid-sender    /sender (address )?(rejected|invalid|unknown|domain|verify)|invalid sender|bad sender|unknown sender/\n"
	"# 550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown\n"
	"# 550 5.1.1 User unknown\n"
	"# 550 Recipient not found\n"
	"bad-mailbox       /user unknown|unknown user|unknown recipient|recipient unknown|no such (user|recipient|mailbox|account|address)|(user|recipient|mailbox|address|account) (not found|does not exist|doesn't exist|unavailable|not exist|is unknown|invalid)|invalid (recipient|mailbox)|not a valid (mailbox|recipient|user)|mailbox not found|bad destination mailbox/\n"
	"# 550 5.1.2 Host unknown (Name server: example.invalid: host not found)\n"
	"# 550 Domain does not exist\n"
	"bad-domain        /(host|domain) (not found|unknown|does not exist|doesn't exist)|unknown (host|domain)|no such domain|domain (is )?(invalid|not valid)|null MX/\n"
	"# 550 5.7.1 Unable to relay\n"
	"# 554 5.7.1 Relaying denied\n"
	"relaying-issues   /relay(ing)? (denied|not (allowed|permitted))|unable to relay|not permitted to relay|we do not relay/\n"
	"# 554 5.4.6 Too many hops\n"
	"# 554 5.4.0 Mail loop detected\n"
	"routing-errors    /mail ?loop|loops back to myself|too many hops/\n"
	"# 550 5.4.7 Message expired\n"
	"# 421 4.4.7 Delivery time expired\n"
	"message-expired   /(message|delivery time|message lifetime|queue) (has )?expired|retry timeout exceeded/\n"
	"# 421 4.7.0 Too many messages, try again later\n"
	"# 450 4.7.1 Rate limit exceeded\n"
	"policy-related    /rate ?limit|too many (messages|connections|recipients|sessions)|try again later|throttl/\n"
	"# 550 5.7.1 Message rejected due to DMARC policy\n"
	"# 550 5.7.1 Email rejected per DMARC policy for example.com\n"
	"# 550 5.7.1 Client host rejected: Access denied\n"
	"policy-related    /DMARC|DKIM|SPF|PTR|reverse DNS|rDNS|policy|not authorized|denied|refused|prohibited|blocked/\n"
	"# 500 5.5.1 Command unrecognized\n"
	"# 503 5.5.1 Bad sequence of commands\n"
	"protocol-errors   code=50x\n"
};

static int
category_lookup(const char *name)
{
	for (int i = 0; i < CAT_COUNT; i++)
		if (strcmp(cat_names[i], name) == 0)
			return i;
	return -1;
}

bool
bounce_category_valid(const char *name)
{
	return name != NULL && category_lookup(name) >= 0;
}




/* An enhanced status code at s ("5.1.1", "4.7.650"); length used in *len.
 * The class may be any digit here: replies are what they are. */

static void
rules_free_n(struct rule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].m.has_re)
			regfree(&v[i].m.re);
	free(v);
}

void
bounce_rules_free(struct bounce_rules *r)
{
	if (r == NULL)
		return;
	rules_free_n(r->v, r->n);
	free(r);
}

size_t
bounce_rules_count(const struct bounce_rules *r)
{
	return r == NULL ? 0 : r->n;
}

/*
 * Parse one rule line (NUL-terminated, no newline, not blank, not a
 * comment) into *ru. On error write "name:line: message" and return false;
 * *ru then holds nothing to free.
 */
static bool
parse_rule(char *s, const char *name, int line, struct rule *ru,
    char *err, size_t errlen)
{
	char *re_start, *re_end, *tok, *save = NULL;
	int cat;

	memset(ru, 0, sizeof(*ru));
	ru->line = line;

	/* The regex runs from the first '/' to the last: it may hold blanks
	 * and slashes, and nothing before it can contain a '/'. */
	re_start = strchr(s, '/');
	re_end = NULL;
	if (re_start != NULL) {
		re_end = strrchr(s, '/');
		if (re_end == re_start) {
			snprintf(err, errlen, "%s:%d: regex not closed: %s", name, line,
			    re_start);
			return false;
		}
		const char *after = re_end + 1;

		while (isspace((unsigned char)*after))
			after++;
		if (*after != '\0') {
			snprintf(err, errlen, "%s:%d: text after the regex: %s", name,
			    line, after);
			return false;
		}
		*re_start = '\0';
		*re_end = '\0';
	}

	tok = strtok_r(s, " \t", &save);
	if (tok == NULL) {
		snprintf(err, errlen, "%s:%d: rule has no category", name, line);
		return false;
	}
	if ((cat = category_lookup(tok)) < 0) {
		snprintf(err, errlen, "%s:%d: unknown category \"%s\"", name, line, tok);
		return false;
	}
	ru->cat = (enum category)cat;

	while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
		if (strncmp(tok, "code=", 5) == 0) {
			if (ru->m.has_code) {
				snprintf(err, errlen, "%s:%d: duplicate code=", name, line);
				return false;
			}
			if (!reply_code_pattern(tok + 5, ru->m.code)) {
				snprintf(err, errlen,
				    "%s:%d: bad code pattern \"%s\" (NNN, NNx or Nxx)",
				    name, line, tok + 5);
				return false;
			}
			ru->m.has_code = true;
		} else if (strncmp(tok, "status=", 7) == 0) {
			if (ru->m.has_status) {
				snprintf(err, errlen, "%s:%d: duplicate status=", name, line);
				return false;
			}
			if (!reply_status_pattern(tok + 7, ru->m.status)) {
				snprintf(err, errlen,
				    "%s:%d: bad status pattern \"%s\" (X.Y.Z, X.Y.* or X.*)",
				    name, line, tok + 7);
				return false;
			}
			ru->m.has_status = true;
		} else {
			snprintf(err, errlen,
			    "%s:%d: unknown matcher \"%s\" (code=, status= or /regex/)",
			    name, line, tok);
			return false;
		}
	}

	if (re_start != NULL) {
		const char *pat = re_start + 1;
		int rc;

		if (*pat == '\0') {
			snprintf(err, errlen, "%s:%d: empty regex", name, line);
			return false;
		}
		rc = regcomp(&ru->m.re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			char msg[256];

			regerror(rc, &ru->m.re, msg, sizeof(msg));
			regfree(&ru->m.re);
			snprintf(err, errlen, "%s:%d: bad regex /%s/: %s", name, line,
			    pat, msg);
			return false;
		}
		ru->m.has_re = true;
	}
	if (!ru->m.has_code && !ru->m.has_status && !ru->m.has_re) {
		snprintf(err, errlen,
		    "%s:%d: rule has no matcher (code=, status= or /regex/)", name, line);
		return false;
	}
	return true;
}

static bool
parse_one(char *s, int line, void *elem, const struct rule_file *f)
{
	return parse_rule(s, f->name, line, elem, f->err, f->errlen);
}

struct bounce_rules *
bounce_rules_parse(const char *text, const char *name, char *err, size_t errlen)
{
	struct bounce_rules *r = xcalloc(1, sizeof(*r));
	struct rule_file f = { name, err, errlen };
	void *v;

	bool ok = reply_rules_array(text, sizeof(*r->v), parse_one, &f, &v, &r->n);
	r->v = v;
	if (!ok) {
		bounce_rules_free(r);
		return NULL;
	}
	return r;
}

struct bounce_rules *
bounce_rules_load(const char *path, char *err, size_t errlen)
{
	struct bounce_rules *r;
	char *text;

	if (path == NULL)
		return bounce_rules_parse(bounce_rules_builtin, "built-in bounce rules", err, errlen);
	if ((text = reply_rules_text(path, err, errlen)) == NULL)
		return NULL;
	r = bounce_rules_parse(text, path, err, errlen);
	free(text);
	return r;
}

/*
 * No rule matched: the RFC 3463 subject and detail of the enhanced status
 * (RFC 7505 for X.1.10, RFC 7372 for the X.7.x authentication details).
 */
static enum category
fallback_category(const int st[3])
{
	switch (st[1]) {
	case 1:
		switch (st[2]) {
		case 1: case 3: case 4:
			return CAT_BAD_MAILBOX;
		case 2: case 10:
			return CAT_BAD_DOMAIN;
		case 6:
			return CAT_INACTIVE_MAILBOX;
		case 7: case 8:
			return CAT_INVALID_SENDER;
		default:
			return CAT_OTHER;
		}
	case 2:
		switch (st[2]) {
		case 1:
			return CAT_INACTIVE_MAILBOX;
		case 2:
			return CAT_QUOTA_ISSUES;
		case 3:
			return CAT_MESSAGE_TOO_LARGE;
		default:
			return CAT_OTHER;
		}
	case 3:
		switch (st[2]) {
		case 3:
			return CAT_CONTENT_RELATED;
		case 4:
			return CAT_MESSAGE_TOO_LARGE;
		case 5:
			return CAT_BAD_CONFIGURATION;
		default:
			return CAT_OTHER;
		}
	case 4:
		switch (st[2]) {
		case 1:
			return CAT_NO_ANSWER_FROM_HOST;
		case 2:
			return CAT_BAD_CONNECTION;
		case 5:
			return CAT_OTHER;          /* congestion */
		case 7:
			return CAT_MESSAGE_EXPIRED;
		default:
			return CAT_ROUTING_ERRORS;
		}
	case 5:
		return CAT_PROTOCOL_ERRORS;
	case 6:
		return CAT_CONTENT_RELATED;
	case 7:
		if (st[2] == 13)               /* user account disabled */
			return CAT_INACTIVE_MAILBOX;
		return CAT_POLICY_RELATED;
	default:
		return CAT_OTHER;
	}
}


void
bounce_classify(const struct bounce_rules *r, int code, const char *enh,
    const char *text, struct bounce_class *out)
{
	struct reply_in in;
	enum category cat = CAT_OTHER;
	int cls;

	reply_in_init(&in, code, enh, text);
	cls = code >= 100 && code <= 599 ? code / 100 : in.have_st ? in.st[0] : 0;

	out->rule_line = 0;
	for (size_t i = 0; r != NULL && i < r->n; i++) {
		if (reply_match_test(&r->v[i].m, &in)) {
			cat = r->v[i].cat;
			out->rule_line = r->v[i].line;
			break;
		}
	}
	if (out->rule_line == 0 && in.have_st)
		cat = fallback_category(in.st);
	out->category = cat_names[cat];
	out->ses_type = bounce_ses_type(out->category, cls * 100, &out->ses_subtype);
}

void
bounce_class_expired(struct bounce_class *out)
{
	out->category = cat_names[CAT_MESSAGE_EXPIRED];
	out->rule_line = 0;
	out->ses_type = bounce_ses_type(out->category, 500, &out->ses_subtype);
}

const char *
bounce_ses_type(const char *category, int code, const char **subtype)
{
	const char *type = "Undetermined", *sub = "Undetermined";
	int cls = code >= 100 && code <= 599 ? code / 100 : 0;
	int cat = category == NULL ? -1 : category_lookup(category);

	if (cat == CAT_MESSAGE_EXPIRED) {
		type = "Permanent";
		sub = "General";
	} else if (category != NULL && strcmp(category, "suppressed") == 0) {
		type = "Permanent";
		sub = "Suppressed";
	} else if (cat < 0 || cat == CAT_OTHER || (cls != 4 && cls != 5)) {
		/* Undetermined */
	} else {
		/* SES reports these as Transient even when the reply was 5xx:
		 * the address is good, the message or the moment was not. */
		switch (cat) {
		case CAT_QUOTA_ISSUES:
			type = "Transient";
			sub = "MailboxFull";
			break;
		case CAT_MESSAGE_TOO_LARGE:
			type = "Transient";
			sub = "MessageTooLarge";
			break;
		case CAT_CONTENT_RELATED:
			type = "Transient";
			sub = "ContentRejected";
			break;
		case CAT_VIRUS_RELATED:
			type = "Transient";
			sub = "AttachmentRejected";
			break;
		case CAT_SPAM_RELATED:
			/* A 4xx is a reputation deferral, not a verdict on the
			 * content. */
			type = "Transient";
			sub = cls == 5 ? "ContentRejected" : "General";
			break;
		case CAT_BAD_MAILBOX:
		case CAT_BAD_DOMAIN:
		case CAT_INACTIVE_MAILBOX:
			type = cls == 5 ? "Permanent" : "Transient";
			sub = cls == 5 ? "NoEmail" : "General";
			break;
		default:
			type = cls == 5 ? "Permanent" : "Transient";
			sub = "General";
			break;
		}
	}
	if (subtype != NULL)
		*subtype = sub;
	return type;
}
