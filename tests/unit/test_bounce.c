/*
 * bounce.c: real-world replies from the big mailbox providers, filters and
 * MTA defaults, each with its expected category and SES type/subtype; the
 * fallback on the enhanced status; rule order; every parse error with its
 * exact "name:LINE: message" text; and the built-in rules being a byte for
 * byte copy of conf/bounce-rules.conf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounce.h"
#include "util.h"
#include "unit.h"

static char errbuf[1024];

struct reply_case {
	int code;
	const char *enh;
	const char *text;              /* as smtp_reply keeps it: enhanced code off */
	const char *category;
	const char *ses_type;
	const char *ses_subtype;
};

#define PERM_NOEMAIL   "Permanent", "NoEmail"
#define PERM_GENERAL   "Permanent", "General"
#define TRANS_GENERAL  "Transient", "General"
#define TRANS_FULL     "Transient", "MailboxFull"
#define TRANS_LARGE    "Transient", "MessageTooLarge"
#define TRANS_CONTENT  "Transient", "ContentRejected"
#define TRANS_ATTACH   "Transient", "AttachmentRejected"
#define UNDETERMINED   "Undetermined", "Undetermined"

static const struct reply_case cases[] = {
	/* Gmail */
	{ 550, "5.1.1", "The email account that you tried to reach does not exist. Please try "
	  "double-checking the recipient's email address for typos or unnecessary spaces. "
	  "Learn more at https://support.google.com/mail/?p=NoSuchUser "
	  "a1-20020a170906a00100b009a1e7c8f2fbsi1234567ejb.123 - gsmtp",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.2.1", "The email account that you tried to reach is disabled. Learn more at "
	  "https://support.google.com/mail/?p=DisabledUser x12si345 - gsmtp",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 552, "5.2.2", "The email account that you tried to reach is over quota. Please direct "
	  "the recipient to https://support.google.com/mail/?p=OverQuotaPerm x12si345 - gsmtp",
	  "quota-issues", TRANS_FULL },
	{ 452, "4.2.2", "The email account that you tried to reach is over quota. Please direct "
	  "the recipient to https://support.google.com/mail/?p=OverQuotaTemp x12si345 - gsmtp",
	  "quota-issues", TRANS_FULL },
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. "
	  "Please resend your message at a later time. If the user is able to receive mail at "
	  "that time, your message will be delivered. - gsmtp",
	  "policy-related", TRANS_GENERAL },
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that "
	  "prevents additional messages from being delivered. Please resend your message at a "
	  "later time. - gsmtp",
	  "policy-related", TRANS_GENERAL },
	{ 553, "5.1.2", "We weren't able to find the recipient domain. Please check for any "
	  "spelling errors, and make sure you didn't enter any spaces, periods, or other "
	  "punctuation after the recipient's email address. - gsmtp",
	  "bad-domain", PERM_NOEMAIL },
	{ 552, "5.3.4", "Your message exceeded Google's message size limits. Please visit "
	  "https://support.google.com/mail/?p=MaxSizeError to view our size guidelines. - gsmtp",
	  "message-too-large", TRANS_LARGE },
	{ 552, "5.7.0", "This message was blocked because its content presents a potential "
	  "security issue. Please visit https://support.google.com/mail/?p=BlockedMessage to "
	  "review our message content and attachment content guidelines. - gsmtp",
	  "virus-related", TRANS_ATTACH },
	{ 550, "5.7.1", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail "
	  "originating from your IP address. To protect our users from spam, mail sent from "
	  "your IP address has been blocked. - gsmtp",
	  "spam-related", TRANS_CONTENT },
	{ 421, "4.7.28", "[192.0.2.1] Our system has detected an unusual rate of unsolicited "
	  "mail originating from your IP address. To protect our users from spam, mail sent "
	  "from your IP address has been temporarily rate limited. - gsmtp",
	  "spam-related", TRANS_GENERAL },
	{ 550, "5.7.1", "[192.0.2.1] Our system has detected that this message is likely "
	  "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been "
	  "blocked. - gsmtp",
	  "spam-related", TRANS_CONTENT },
	{ 421, "4.7.0", "[192.0.2.1] Our system has detected that this message is suspicious "
	  "due to the very low reputation of the sending domain. - gsmtp",
	  "spam-related", TRANS_GENERAL },
	{ 550, "5.7.26", "This mail has been blocked because the sender is unauthenticated. "
	  "Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.26", "Unauthenticated email from example.com is not accepted due to "
	  "domain's DMARC policy. Please contact the administrator of example.com domain if "
	  "this was a legitimate mail. - gsmtp",
	  "policy-related", PERM_GENERAL },
	{ 421, "4.7.0", "This message does not have authentication information or fails to pass "
	  "authentication checks (SPF or DKIM). To best protect our users from spam, the "
	  "message has been blocked. - gsmtp",
	  "policy-related", TRANS_GENERAL },
	{ 550, "5.7.25", "[192.0.2.1] The IP address sending this message does not have a PTR "
	  "record setup, or the corresponding forward DNS entry does not point to the sending "
	  "IP. - gsmtp",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.1", "The user or domain that you are sending to (or from) has a policy that "
	  "prohibited the mail that you sent. - gsmtp",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.1", "[192.0.2.1] Messages missing a valid address in From: header, or "
	  "having no From: header, are not accepted. - gsmtp",
	  "content-related", TRANS_CONTENT },
	{ 554, "5.6.0", "Message exceeded 50 hops, this may indicate a mail loop. - gsmtp",
	  "routing-errors", PERM_GENERAL },
	{ 421, "4.7.0", "Try again later, closing connection. This usually indicates a Denial "
	  "of Service (DoS) for the SMTP relay at the HELO stage. - gsmtp",
	  "policy-related", TRANS_GENERAL },

	/* Microsoft */
	{ 550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
	  "your Internet service provider since part of their network is on our block list "
	  "(S3150). You can also refer your provider to "
	  "http://mail.live.com/mail/troubleshooting.aspx#errors. "
	  "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
	  "your Internet service provider since part of their network is on our block list "
	  "(S3140). You can also refer your provider to "
	  "http://mail.live.com/mail/troubleshooting.aspx#errors.",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. "
	  "To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 "
	  "(AS3130). [BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.708", "Service unavailable. Access denied, traffic not accepted from this "
	  "IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 "
	  "AS(7230) [DB5EUR03FT019.eop-EUR03.prod.protection.outlook.com]",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]. To request removal "
	  "from this list please visit https://sender.office.com/ and follow the directions.",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.705", "Access denied, tenant has exceeded threshold. For more information "
	  "please go to http://go.microsoft.com/fwlink/?LinkId=526653",
	  "spam-related", TRANS_CONTENT },
	{ 451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to "
	  "IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
	  "spam-related", TRANS_GENERAL },
	{ 451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (S77714) "
	  "[DM6NAM10FT011.eop-nam10.prod.protection.outlook.com]",
	  "policy-related", TRANS_GENERAL },
	{ 550, "5.7.750", "Service unavailable. Client blocked from sending from unregistered "
	  "domains. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.509", "Access denied, sending domain [EXAMPLE.COM] does not pass DMARC "
	  "verification and has a DMARC policy of reject.",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.515", "Access denied, sending domain [EXAMPLE.COM] does not meet the "
	  "required authentication level.",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.520", "Access denied, Your organization does not allow external forwarding. "
	  "Please contact your administrator for further assistance. AS(7555)",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.133", "RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required; "
	  "Delivery restriction check failed as sender not authenticated",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient someone@example.com not "
	  "found by SMTP address lookup",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281) "
	  "[DM6NAM10FT012.eop-nam10.prod.protection.outlook.com]",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.4.310", "DNS domain example.com does not exist [Message=InfoDomainNonexistent] "
	  "[LastAttemptedServerName=example.com] [AM5EUR02FT050.eop-eur02.prod.protection.outlook.com]",
	  "bad-domain", PERM_NOEMAIL },
	{ 554, "5.4.14", "Hop count exceeded - possible mail loop ATTR34 "
	  "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]",
	  "routing-errors", PERM_GENERAL },
	{ 554, "5.2.2", "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
	  "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent "
	  "exception with message",
	  "quota-issues", TRANS_FULL },
	{ 554, "5.6.211", "Invalid MIME Content: Single text value size (32780) exceeded allowed "
	  "maximum (32768) for the 'Subject' property.",
	  "content-related", TRANS_CONTENT },
	{ 550, "5.7.60", "SMTP; Client does not have permissions to send as this sender",
	  "invalid-sender", PERM_GENERAL },
	{ 550, "5.7.64", "TenantAttribution; Relay Access Denied "
	  "[SN1NAM02FT012.eop-nam02.prod.protection.outlook.com]",
	  "relaying-issues", PERM_GENERAL },
	{ 550, "5.7.54", "SMTP; Unable to relay recipient in non-accepted domain",
	  "relaying-issues", PERM_GENERAL },
	{ 421, "4.3.2", "The maximum number of concurrent server connections has exceeded a "
	  "limit, closing transmission channel",
	  "policy-related", TRANS_GENERAL },
	{ 550, "5.5.0", "Requested action not taken: mailbox unavailable (S2017062302) "
	  "[BN8NAM12FT042.eop-nam12.prod.protection.outlook.com]",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.5.0", "Requested action not taken: mailbox unavailable",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 552, "5.3.4", "Message size exceeds fixed maximum message size",
	  "message-too-large", TRANS_LARGE },

	/* Yahoo, AOL */
	{ 421, "4.7.0", "[TS01] Messages from 192.0.2.1 temporarily deferred due to user "
	  "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 421, "4.7.0", "[TS02] Messages from 192.0.2.1 temporarily deferred due to unexpected "
	  "volume or user complaints - 4.16.56.1; see https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 421, "4.7.0", "[TS03] All messages from 192.0.2.1 will be permanently deferred; "
	  "Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 421, "4.7.0", "[TS04] Messages from 192.0.2.1 temporarily deferred due to user "
	  "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
	  "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 553, "5.7.2", "[TSS09] All messages from 192.0.2.1 will be permanently deferred; "
	  "Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_CONTENT },
	{ 421, "4.7.0", "[GL01] Message from (192.0.2.1) temporarily deferred - 4.16.50. Please "
	  "refer to https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_GENERAL },
	{ 553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip "
	  "is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
	  "spam-related", TRANS_CONTENT },
	{ 554, "", "delivery error: dd This user doesn't have a yahoo.com account "
	  "(someone@yahoo.com) [0] - mta4012.mail.bf1.yahoo.com",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 554, "", "delivery error: dd This user doesn't have a aol.com account "
	  "(someone@aol.com) [0] - mta1153.mail.gq1.yahoo.com",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 554, "", "delivery error: dd This account has been disabled or discontinued [#102]. "
	  "- mta1001.mail.ne1.yahoo.com",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 554, "", "delivery error: dd Sorry, your message to someone@yahoo.com cannot be "
	  "delivered. This mailbox is disabled (554.30). - mta1075.mail.bf1.yahoo.com",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 552, "", "1 Requested mail action aborted, mailbox not found",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 451, "", "Message temporarily deferred - [160]",
	  "policy-related", TRANS_GENERAL },
	{ 554, "", "Message not allowed - [PH01] Email not accepted for policy reasons. Please "
	  "visit https://postmaster.yahooinc.com/error-codes",
	  "policy-related", PERM_GENERAL },
	{ 554, "5.7.9", "Message not accepted for policy reasons.  See "
	  "https://postmaster.yahooinc.com/error-codes",
	  "policy-related", PERM_GENERAL },
	{ 550, "5.7.9", "This mail has been blocked because the sender is unauthenticated. "
	  "Yahoo requires all senders to authenticate with either SPF or DKIM.",
	  "policy-related", PERM_GENERAL },
	{ 554, "", "- (RTR:BB) The IP address you are using to connect to AOL is a dynamic "
	  "(residential) IP address. / AOL will not accept future e-mail transactions from this "
	  "IP address until your ISP removes the dynamic/residential designation.",
	  "policy-related", PERM_GENERAL },
	{ 421, "", "DYN:T1 http://postmaster.info.aol.com/errors/421dynt1.html",
	  "policy-related", TRANS_GENERAL },

	/* Apple iCloud */
	{ 550, "5.1.1", "<someone@icloud.com>: inactive email address",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 550, "5.1.1", "<someone@icloud.com>: user does not exist",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 552, "5.2.2", "<someone@me.com>: user is over quota",
	  "quota-issues", TRANS_FULL },
	{ 554, "5.7.1", "[CS01] Message rejected due to local policy. Please visit "
	  "https://support.apple.com/en-us/HT204137",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.1", "[HM08] Message rejected due to local policy. Please visit "
	  "https://support.apple.com/en-us/HT204137",
	  "spam-related", TRANS_CONTENT },
	{ 421, "4.7.0", "[IR01] Service temporarily unavailable, please try again later. "
	  "https://support.apple.com/en-us/HT204137",
	  "policy-related", TRANS_GENERAL },

	/* Comcast */
	{ 550, "5.1.1", "<someone@comcast.net> Not our Customer",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 554, "", "resimta-po-20v.sys.comcast.net comcast 192.0.2.1 Comcast BL004 Blocked for "
	  "spam.  Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000004",
	  "spam-related", TRANS_CONTENT },
	{ 554, "", "resimta-ch2-05v.sys.comcast.net comcast 192.0.2.1 Comcast requires that all "
	  "mail servers must have a PTR record with a valid Reverse DNS entry. Currently your "
	  "mail server does not fulfill this requirement. For more information, refer to: "
	  "http://postmaster.comcast.net/smtp-error-codes.php#554",
	  "policy-related", PERM_GENERAL },
	{ 421, "", "resimta-h1p-028597.sys.comcast.net comcast 192.0.2.1 Comcast RL000001 Too "
	  "many sessions are opened from 192.0.2.1. For more information, refer to: "
	  "http://postmaster.comcast.net/smtp-error-codes.php#RL000001",
	  "policy-related", TRANS_GENERAL },

	/* GMX, web.de */
	{ 554, "", "gmx.net (mxgmx117) Nemesis ESMTP Service not available / No SMTP service / "
	  "Bad DNS PTR resource record. / For explanation visit "
	  "https://postmaster.gmx.net/en/case?c=r0302&i=ip&v=192.0.2.1&r=1MZCfs-1qiWnM2fGq-00V8Jx",
	  "policy-related", PERM_GENERAL },
	{ 554, "", "gmx.net (mxgmx014) Nemesis ESMTP Service not available / No SMTP service / "
	  "IP address is block listed. / For explanation visit "
	  "https://postmaster.gmx.net/en/case?c=r0701&i=ip&v=192.0.2.1&r=1N8GQ3-1rD4aS0ckn-014Ldf",
	  "spam-related", TRANS_CONTENT },
	{ 554, "", "Transaction failed / Reject due to policy restrictions. / For explanation "
	  "visit https://postmaster.web.de/en/case?c=hi&i=ip&v=192.0.2.1&r=0MFKJ1-1r0wZn3Z0X-00GYZx",
	  "policy-related", PERM_GENERAL },
	{ 550, "", "Requested action not taken: mailbox unavailable",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 552, "", "Requested mail action aborted: exceeded mailsize limit",
	  "message-too-large", TRANS_LARGE },

	/* Mail.ru */
	{ 550, "", "Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru "
	  "is unavailable: user not found",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "", "Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru "
	  "is unavailable: account is disabled",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 550, "", "spam message rejected. Please visit "
	  "http://help.mail.ru/notspam-support/id?c=abc or report details to "
	  "abuse@corp.mail.ru. Error code: 5B0D2C45.",
	  "spam-related", TRANS_CONTENT },
	{ 421, "", "ratelimit exceeded; try again later",
	  "policy-related", TRANS_GENERAL },

	/* Yandex */
	{ 550, "5.7.1", "No such user!",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 554, "5.7.1", "[2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc "
	  "1693238520-abcdef",
	  "spam-related", TRANS_CONTENT },
	{ 550, "5.7.1", "Policy rejection on the target address",
	  "policy-related", PERM_GENERAL },
	{ 451, "4.7.1", "Sorry, the service is currently unavailable. Please come back later. "
	  "1693238520-abcdef",
	  "policy-related", TRANS_GENERAL },
	{ 552, "5.2.2", "Mailbox size limit exceeded",
	  "quota-issues", TRANS_FULL },

	/* Proofpoint */
	{ 554, "5.7.0", "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
	  "spam-related", TRANS_CONTENT },
	{ 521, "5.7.1", "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
	  "spam-related", TRANS_CONTENT },

	/* Mimecast */
	{ 550, "", "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 "
	  "[Bq-2m0kcNDeEAvGJ6dDx2w.uk51]",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "", "Rejected by header based Anti-Spoofing policy: someone@example.com - "
	  "https://community.mimecast.com/docs/DOC-1369#550 [abc.us123]",
	  "policy-related", PERM_GENERAL },
	{ 550, "", "Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550",
	  "policy-related", PERM_GENERAL },
	{ 554, "", "Email rejected due to security policies - "
	  "https://community.mimecast.com/docs/DOC-1369#554",
	  "policy-related", PERM_GENERAL },
	{ 451, "", "Open relay not allowed - https://community.mimecast.com/docs/DOC-1369#451",
	  "relaying-issues", TRANS_GENERAL },
	{ 451, "", "Internal resource temporarily unavailable - "
	  "https://community.mimecast.com/docs/DOC-1369#451",
	  "other", UNDETERMINED },

	/* Barracuda */
	{ 554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using Barracuda "
	  "Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.1",
	  "spam-related", TRANS_CONTENT },
	{ 550, "", "permanent failure for one or more recipients (someone@example.com:blocked)",
	  "spam-related", TRANS_CONTENT },
	{ 550, "", "No such user (someone@example.com)",
	  "bad-mailbox", PERM_NOEMAIL },

	/* Postfix defaults */
	{ 550, "5.1.1", "<someone@example.com>: Recipient address rejected: User unknown in "
	  "local recipient table",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.1.1", "<someone@example.com>: Recipient address rejected: User unknown in "
	  "virtual mailbox table",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 450, "4.1.1", "<someone@example.com>: Recipient address rejected: unverified address: "
	  "host mx.example.com[192.0.2.9] said: 550 5.1.1 User unknown",
	  "bad-mailbox", TRANS_GENERAL },
	{ 450, "4.1.2", "<someone@example.invalid>: Recipient address rejected: Domain not found",
	  "bad-domain", TRANS_GENERAL },
	{ 450, "4.1.8", "<bounce@example.com>: Sender address rejected: Domain not found",
	  "invalid-sender", TRANS_GENERAL },
	{ 550, "5.1.0", "<bounce@example.com>: Sender address rejected: User unknown in local "
	  "recipient table",
	  "invalid-sender", PERM_GENERAL },
	{ 554, "5.7.1", "<someone@example.net>: Relay access denied",
	  "relaying-issues", PERM_GENERAL },
	{ 450, "4.2.0", "<someone@example.com>: Recipient address rejected: Greylisted, see "
	  "http://postgrey.schweikert.ch/help/example.com.html",
	  "policy-related", TRANS_GENERAL },
	{ 450, "4.7.25", "Client host rejected: cannot find your hostname, [192.0.2.1]",
	  "policy-related", TRANS_GENERAL },
	{ 504, "5.5.2", "<localhost>: Helo command rejected: need fully-qualified hostname",
	  "bad-configuration", PERM_GENERAL },
	{ 550, "5.7.23", "<someone@example.com>: Recipient address rejected: Message rejected due "
	  "to: SPF fail - not authorized. Please see "
	  "http://www.openspf.net/Why?s=mfrom;id=bounce@example.com;ip=192.0.2.1;r=mx.example.com",
	  "policy-related", PERM_GENERAL },
	{ 554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using "
	  "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1",
	  "spam-related", TRANS_CONTENT },
	{ 552, "5.3.4", "Message size exceeds fixed limit",
	  "message-too-large", TRANS_LARGE },
	{ 421, "4.7.0", "mx.example.com Error: too many connections from 192.0.2.1",
	  "policy-related", TRANS_GENERAL },
	{ 552, "5.2.2", "<someone@example.com> Quota exceeded (mailbox for user is full)",
	  "quota-issues", TRANS_FULL },

	/* Exim defaults */
	{ 550, "", "Verification failed for <bounce@example.com> / Unrouteable address / "
	  "Sender verify failed",
	  "invalid-sender", PERM_GENERAL },
	{ 550, "", "Unrouteable address",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "", "No Such User Here",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "", "relay not permitted",
	  "relaying-issues", PERM_GENERAL },
	{ 550, "", "rejected because 192.0.2.1 is in a black list at zen.spamhaus.org",
	  "spam-related", TRANS_CONTENT },
	{ 550, "", "Administrative prohibition",
	  "policy-related", PERM_GENERAL },
	{ 552, "", "Message size exceeds maximum permitted",
	  "message-too-large", TRANS_LARGE },
	{ 421, "", "Too many concurrent SMTP connections; please try again later.",
	  "policy-related", TRANS_GENERAL },
	{ 554, "", "SMTP synchronization error",
	  "protocol-errors", PERM_GENERAL },
	{ 451, "", "Temporary local problem - please try later",
	  "other", UNDETERMINED },

	/* General texts from smaller providers and appliances */
	{ 550, "5.1.1", "<someone@example.com>: Recipient address rejected: User unknown",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "", "Recipient not found",
	  "bad-mailbox", PERM_NOEMAIL },
	{ 550, "5.1.2", "Host unknown (Name server: example.invalid: host not found)",
	  "bad-domain", PERM_NOEMAIL },
	{ 553, "5.1.8", "<bounce@example.com>: Sender address domain does not exist",
	  "invalid-sender", PERM_GENERAL },
	{ 554, "5.7.1", "The message contains a virus (Eicar-Test-Signature)",
	  "virus-related", TRANS_ATTACH },
	{ 550, "5.7.1", "Message rejected as spam by Content Filtering.",
	  "spam-related", TRANS_CONTENT },
	{ 552, "5.2.2", "Mailbox full",
	  "quota-issues", TRANS_FULL },
	{ 550, "5.2.1", "<someone@example.com>: Mailbox disabled for this recipient",
	  "inactive-mailbox", PERM_NOEMAIL },
	{ 550, "5.7.1", "Email rejected per DMARC policy for example.com",
	  "policy-related", PERM_GENERAL },
	{ 554, "5.6.1", "Attachment type not allowed (.exe)",
	  "content-related", TRANS_CONTENT },
	{ 500, "5.5.1", "Command unrecognized",
	  "protocol-errors", PERM_GENERAL },

	/* sluice's own synthesised replies */
	{ 451, "4.4.1", "connect to mx.example.com[192.0.2.9]:25: Connection refused",
	  "no-answer-from-host", TRANS_GENERAL },
	{ 451, "4.4.1", "connect to mx.example.com[192.0.2.9]:25 timed out",
	  "no-answer-from-host", TRANS_GENERAL },
	{ 451, "4.4.2", "connection with mx.example.com[192.0.2.9] reset during DATA",
	  "bad-connection", TRANS_GENERAL },
	{ 451, "4.4.2", "timeout waiting for the DATA reply from mx.example.com[192.0.2.9]",
	  "bad-connection", TRANS_GENERAL },
	{ 451, "4.7.5", "TLS handshake with mx.example.com[192.0.2.9] failed: wrong version number",
	  "bad-connection", TRANS_GENERAL },
	{ 451, "4.7.4", "TLS required but not offered by mx.example.com[192.0.2.9]",
	  "policy-related", TRANS_GENERAL },
	{ 550, "5.1.2", "Domain example.invalid does not exist",
	  "bad-domain", PERM_NOEMAIL },
	{ 556, "5.1.10", "Domain example.com does not accept mail (null MX)",
	  "bad-domain", PERM_NOEMAIL },
	{ 451, "4.4.3", "DNS lookup for example.com failed: Timeout while contacting DNS servers",
	  "routing-errors", TRANS_GENERAL },
	{ 552, "5.3.4", "message size 52428800 exceeds the limit of 20971520 of "
	  "mx.example.com[192.0.2.9]",
	  "message-too-large", TRANS_LARGE },
};

static void
check_case(const struct bounce_rules *r, const struct reply_case *c, size_t i)
{
	struct bounce_class bc;

	bounce_classify(r, c->code, c->enh, c->text, &bc);
	if (strcmp(bc.category, c->category) != 0 ||
	    strcmp(bc.ses_type, c->ses_type) != 0 ||
	    strcmp(bc.ses_subtype, c->ses_subtype) != 0) {
		print_error("case %zu: %d %s %s\n  want %s %s/%s\n  got  %s %s/%s (rule line %d)\n",
		    i, c->code, c->enh, c->text, c->category, c->ses_type, c->ses_subtype,
		    bc.category, bc.ses_type, bc.ses_subtype, bc.rule_line);
		fail();
	}
}

static void
test_real_replies(void **state)
{
	struct bounce_rules *r = bounce_rules_load(NULL, errbuf, sizeof(errbuf));

	(void)state;
	if (r == NULL)
		fail_msg("built-in rules: %s", errbuf);
	assert_true(sizeof(cases) / sizeof(cases[0]) >= 80);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(r, &cases[i], i);
	bounce_rules_free(r);
}

/* The provider rules, not the fallback, classify the provider texts: each
 * real reply above that has a provider-specific rule names its line. */
static void
test_rule_lines(void **state)
{
	struct bounce_rules *r = bounce_rules_load(NULL, errbuf, sizeof(errbuf));
	struct bounce_class bc;

	(void)state;
	assert_non_null(r);
	assert_true(bounce_rules_count(r) >= 100);
	bounce_classify(r, 550, "5.7.708", "Service unavailable. Access denied, traffic not "
	    "accepted from this IP.", &bc);
	assert_true(bc.rule_line > 0);
	assert_true(strstr(bounce_rules_builtin, "spam-related      status=5.7.708\n") != NULL);
	/* The line number is the line of that rule in the file. */
	{
		int line = 1;

		for (const char *p = bounce_rules_builtin;
		    strncmp(p, "spam-related      status=5.7.708\n", 33) != 0; p++)
			if (*p == '\n')
				line++;
		assert_int_equal(bc.rule_line, line);
	}
	/* Nothing matches: the fallback names no line. */
	bounce_classify(r, 550, "5.1.1", "zzz", &bc);
	assert_int_equal(bc.rule_line, 0);
	assert_string_equal(bc.category, "bad-mailbox");
	bounce_rules_free(r);
}

/* The enhanced status decides when no rule matches; "other" without one. */
static void
test_fallback(void **state)
{
	static const struct {
		int code;
		const char *enh, *category;
	} fb[] = {
		{ 550, "5.1.1", "bad-mailbox" }, { 550, "5.1.2", "bad-domain" },
		{ 556, "5.1.10", "bad-domain" }, { 550, "5.1.6", "inactive-mailbox" },
		{ 553, "5.1.7", "invalid-sender" }, { 553, "5.1.8", "invalid-sender" },
		{ 550, "5.2.1", "inactive-mailbox" }, { 452, "4.2.2", "quota-issues" },
		{ 552, "5.2.3", "message-too-large" }, { 552, "5.3.4", "message-too-large" },
		{ 554, "5.3.5", "bad-configuration" }, { 451, "4.4.1", "no-answer-from-host" },
		{ 451, "4.4.2", "bad-connection" }, { 451, "4.4.3", "routing-errors" },
		{ 554, "5.4.4", "routing-errors" }, { 451, "4.4.5", "other" },
		{ 554, "5.4.6", "routing-errors" }, { 421, "4.4.7", "message-expired" },
		{ 501, "5.5.4", "protocol-errors" }, { 554, "5.6.0", "content-related" },
		{ 550, "5.7.1", "policy-related" }, { 550, "5.7.13", "inactive-mailbox" },
		{ 550, "5.0.0", "other" }, { 550, "", "other" }, { 451, "", "other" },
		{ 550, "5.1", "other" }, { 550, "x.1.1", "other" },
	};
	struct bounce_rules *r = bounce_rules_parse("other code=599\n", "t", errbuf,
	    sizeof(errbuf));
	struct bounce_class bc;

	(void)state;
	assert_non_null(r);
	for (size_t i = 0; i < sizeof(fb) / sizeof(fb[0]); i++) {
		bounce_classify(r, fb[i].code, fb[i].enh, "zzz", &bc);
		if (strcmp(bc.category, fb[i].category) != 0)
			fail_msg("%d %s: want %s, got %s", fb[i].code, fb[i].enh,
			    fb[i].category, bc.category);
		assert_int_equal(bc.rule_line, 0);
		/* No rule set at all: the same fallback. */
		bounce_classify(NULL, fb[i].code, fb[i].enh, "zzz", &bc);
		assert_string_equal(bc.category, fb[i].category);
	}
	/* The enhanced code still in the text counts as the status, and the
	 * regexes do not see it. */
	bounce_classify(r, 550, "", "5.1.1 zzz", &bc);
	assert_string_equal(bc.category, "bad-mailbox");
	/* No code at all: the class comes from the enhanced status. */
	bounce_classify(r, 0, "5.1.1", "zzz", &bc);
	assert_string_equal(bc.ses_type, "Permanent");
	assert_string_equal(bc.ses_subtype, "NoEmail");
	bounce_classify(r, 0, NULL, NULL, &bc);
	assert_string_equal(bc.category, "other");
	assert_string_equal(bc.ses_type, "Undetermined");
	bounce_rules_free(r);
}

static void
test_matchers(void **state)
{
	const char *text =
	    "# comment\n"
	    "\n"
	    "   # indented comment\n"
	    "bad-mailbox code=550 status=5.1.1 /^no such user$/\n"        /* 4 */
	    "quota-issues code=55x /full/\n"                               /* 5 */
	    "spam-related status=5.7.*\n"                                  /* 6 */
	    "policy-related status=4.*\r\n"                                /* 7 */
	    "routing-errors\tcode=5xx\t/a\\/b c/  \n"                      /* 8 */
	    "\tother /^anchored at the start/";                            /* 9: no newline */
	struct bounce_rules *r = bounce_rules_parse(text, "m.conf", errbuf, sizeof(errbuf));
	struct bounce_class bc;

	(void)state;
	if (r == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(bounce_rules_count(r), 6);

	/* All matchers must match. */
	bounce_classify(r, 550, "5.1.1", "No Such User", &bc);
	assert_string_equal(bc.category, "bad-mailbox");
	assert_int_equal(bc.rule_line, 4);
	bounce_classify(r, 551, "5.1.1", "no such user", &bc);
	assert_int_equal(bc.rule_line, 0);
	bounce_classify(r, 550, "5.1.2", "no such user", &bc);
	assert_int_equal(bc.rule_line, 0);
	bounce_classify(r, 550, "", "no such user", &bc);
	assert_int_equal(bc.rule_line, 0);
	/* The regex sees the text after the enhanced code. */
	bounce_classify(r, 550, "5.1.1", "5.1.1 no such user", &bc);
	assert_int_equal(bc.rule_line, 4);

	bounce_classify(r, 552, "", "Mailbox FULL", &bc);
	assert_int_equal(bc.rule_line, 5);
	bounce_classify(r, 452, "", "mailbox full", &bc);
	assert_int_not_equal(bc.rule_line, 5);

	bounce_classify(r, 550, "5.7.999", "", &bc);
	assert_int_equal(bc.rule_line, 6);
	bounce_classify(r, 450, "5.7.1", "", &bc);   /* status class as given */
	assert_int_equal(bc.rule_line, 6);
	bounce_classify(r, 450, "4.7.1", "", &bc);
	assert_int_equal(bc.rule_line, 7);
	assert_string_equal(bc.category, "policy-related");

	bounce_classify(r, 599, "", "xx a/b c yy", &bc);
	assert_int_equal(bc.rule_line, 8);
	bounce_classify(r, 599, "", "a/bc", &bc);
	assert_int_equal(bc.rule_line, 0);

	bounce_classify(r, 299, "", "anchored at the start", &bc);
	assert_int_equal(bc.rule_line, 9);
	assert_string_equal(bc.ses_type, "Undetermined");
	bounce_classify(r, 299, "", "not anchored at the start", &bc);
	assert_int_equal(bc.rule_line, 0);
	bounce_rules_free(r);

	/* An empty file is a valid rule set: the fallback alone. */
	r = bounce_rules_parse("# nothing\n", "e.conf", errbuf, sizeof(errbuf));
	assert_non_null(r);
	assert_int_equal(bounce_rules_count(r), 0);
	bounce_rules_free(r);
}

/* First match wins, and the built-in file is ordered so that the specific
 * reading of a text beats the general one. */
static void
test_rule_order(void **state)
{
	struct bounce_rules *r;
	struct bounce_class bc;

	(void)state;
	r = bounce_rules_parse("spam-related /blocked/\npolicy-related /blocked/\n", "o.conf",
	    errbuf, sizeof(errbuf));
	assert_non_null(r);
	bounce_classify(r, 550, "", "blocked", &bc);
	assert_string_equal(bc.category, "spam-related");
	assert_int_equal(bc.rule_line, 1);
	bounce_rules_free(r);

	r = bounce_rules_parse("policy-related /blocked/\nspam-related /blocked/\n", "o.conf",
	    errbuf, sizeof(errbuf));
	assert_non_null(r);
	bounce_classify(r, 550, "", "blocked", &bc);
	assert_string_equal(bc.category, "policy-related");
	bounce_rules_free(r);

	/* A rule beats the fallback even when the status says otherwise. */
	r = bounce_rules_parse("spam-related /listed/\n", "o.conf", errbuf, sizeof(errbuf));
	assert_non_null(r);
	bounce_classify(r, 550, "5.1.1", "listed", &bc);
	assert_string_equal(bc.category, "spam-related");
	bounce_rules_free(r);

	/* Built-in order: the Exim sender-verify reply mentions an unrouteable
	 * address, but it is about the sender; Postfix's "Sender address
	 * rejected: User unknown" likewise. */
	r = bounce_rules_load(NULL, errbuf, sizeof(errbuf));
	assert_non_null(r);
	bounce_classify(r, 550, "", "Verification failed for <b@example.com> / "
	    "Unrouteable address / Sender verify failed", &bc);
	assert_string_equal(bc.category, "invalid-sender");
	bounce_classify(r, 550, "", "Unrouteable address", &bc);
	assert_string_equal(bc.category, "bad-mailbox");
	bounce_rules_free(r);
}

static void
expect_error(const char *text, const char *want)
{
	struct bounce_rules *r;

	errbuf[0] = '\0';
	r = bounce_rules_parse(text, "bad.conf", errbuf, sizeof(errbuf));
	if (r != NULL) {
		bounce_rules_free(r);
		fail_msg("no error for %s", text);
	}
	assert_string_equal(errbuf, want);
}

static void
test_parse_errors(void **state)
{
	(void)state;
	expect_error("# ok\nbouncy /x/\n", "bad.conf:2: unknown category \"bouncy\"");
	expect_error("bad-mailbox\n", "bad.conf:1: rule has no matcher (code=, status= or /regex/)");
	expect_error("/x/\n", "bad.conf:1: rule has no category");
	expect_error("other /x\n", "bad.conf:1: regex not closed: /x");
	expect_error("other /x/ code=550\n", "bad.conf:1: text after the regex: code=550");
	expect_error("other //\n", "bad.conf:1: empty regex");
	expect_error("other\tcode=5x\n",
	    "bad.conf:1: bad code pattern \"5x\" (NNN, NNx or Nxx)");
	expect_error("other code=650\n",
	    "bad.conf:1: bad code pattern \"650\" (NNN, NNx or Nxx)");
	expect_error("other code=5y0\n",
	    "bad.conf:1: bad code pattern \"5y0\" (NNN, NNx or Nxx)");
	expect_error("other code=5500\n",
	    "bad.conf:1: bad code pattern \"5500\" (NNN, NNx or Nxx)");
	expect_error("other code=550 code=551\n", "bad.conf:1: duplicate code=");
	expect_error("\n\nother status=5.1\n",
	    "bad.conf:3: bad status pattern \"5.1\" (X.Y.Z, X.Y.* or X.*)");
	expect_error("other status=3.1.1\n",
	    "bad.conf:1: bad status pattern \"3.1.1\" (X.Y.Z, X.Y.* or X.*)");
	expect_error("other status=5.*.1\n",
	    "bad.conf:1: bad status pattern \"5.*.1\" (X.Y.Z, X.Y.* or X.*)");
	expect_error("other status=5.1.1000\n",
	    "bad.conf:1: bad status pattern \"5.1.1000\" (X.Y.Z, X.Y.* or X.*)");
	expect_error("other status=5.1.1x\n",
	    "bad.conf:1: bad status pattern \"5.1.1x\" (X.Y.Z, X.Y.* or X.*)");
	expect_error("other status=5.1.1 status=5.1.2\n", "bad.conf:1: duplicate status=");
	expect_error("other stat=5.1.1\n",
	    "bad.conf:1: unknown matcher \"stat=5.1.1\" (code=, status= or /regex/)");

	/* The regex error carries regerror()'s own text. */
	{
		regex_t re;
		char msg[256], want[512];
		int rc = regcomp(&re, "(unclosed", REG_EXTENDED | REG_ICASE | REG_NOSUB);

		assert_int_not_equal(rc, 0);
		regerror(rc, &re, msg, sizeof(msg));
		regfree(&re);
		snprintf(want, sizeof(want), "bad.conf:2: bad regex /(unclosed/: %s", msg);
		expect_error("other /ok/\nother /(unclosed/\n", want);
	}

	/* Load errors name the file. */
	{
		char want[512];

		assert_null(bounce_rules_load("/nonexistent/bounce-rules.conf", errbuf,
		    sizeof(errbuf)));
		snprintf(want, sizeof(want), "/nonexistent/bounce-rules.conf: %s",
		    strerror(ENOENT));
		assert_string_equal(errbuf, want);
	}
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/sluice-test-bounce-XXXXXX";
	int fd = mkstemp(path);
	struct bounce_rules *r;
	struct bounce_class bc;
	static const char text[] = "quota-issues /gobbled/\nother code=5xx /\n";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	assert_int_equal(close(fd), 0);
	r = bounce_rules_load(path, errbuf, sizeof(errbuf));
	assert_null(r);
	{
		char want[512];

		snprintf(want, sizeof(want), "%s:2: regex not closed: /", path);
		assert_string_equal(errbuf, want);
	}
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, 23), 23);
	assert_int_equal(close(fd), 0);
	r = bounce_rules_load(path, errbuf, sizeof(errbuf));
	if (r == NULL)
		fail_msg("%s", errbuf);
	bounce_classify(r, 452, "4.2.2", "Gobbled", &bc);
	assert_string_equal(bc.category, "quota-issues");
	assert_int_equal(bc.rule_line, 1);
	bounce_rules_free(r);
	unlink(path);
}

static void
test_ses_mapping(void **state)
{
	static const struct {
		const char *category;
		int code;
		const char *type, *sub;
	} m[] = {
		{ "bad-mailbox", 550, PERM_NOEMAIL },
		{ "bad-domain", 550, PERM_NOEMAIL },
		{ "inactive-mailbox", 550, PERM_NOEMAIL },
		{ "bad-mailbox", 450, TRANS_GENERAL },
		{ "quota-issues", 552, TRANS_FULL },
		{ "quota-issues", 452, TRANS_FULL },
		{ "message-too-large", 552, TRANS_LARGE },
		{ "content-related", 554, TRANS_CONTENT },
		{ "content-related", 451, TRANS_CONTENT },
		{ "spam-related", 550, TRANS_CONTENT },
		{ "spam-related", 421, TRANS_GENERAL },
		{ "virus-related", 554, TRANS_ATTACH },
		{ "policy-related", 550, PERM_GENERAL },
		{ "policy-related", 450, TRANS_GENERAL },
		{ "routing-errors", 554, PERM_GENERAL },
		{ "bad-connection", 421, TRANS_GENERAL },
		{ "no-answer-from-host", 451, TRANS_GENERAL },
		{ "protocol-errors", 500, PERM_GENERAL },
		{ "relaying-issues", 554, PERM_GENERAL },
		{ "invalid-sender", 553, PERM_GENERAL },
		{ "bad-configuration", 504, PERM_GENERAL },
		{ "message-expired", 451, PERM_GENERAL },
		{ "message-expired", 0, PERM_GENERAL },
		{ "other", 550, UNDETERMINED },
		{ "other", 451, UNDETERMINED },
		{ "bad-mailbox", 0, UNDETERMINED },
		{ "bad-mailbox", 250, UNDETERMINED },
		{ "no-such-category", 550, UNDETERMINED },
		{ "suppressed", 0, "Permanent", "Suppressed" },
	};
	const char *sub;
	struct bounce_class bc;

	(void)state;
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		const char *type = bounce_ses_type(m[i].category, m[i].code, &sub);

		if (strcmp(type, m[i].type) != 0 || strcmp(sub, m[i].sub) != 0)
			fail_msg("%s %d: want %s/%s, got %s/%s", m[i].category, m[i].code,
			    m[i].type, m[i].sub, type, sub);
	}
	assert_string_equal(bounce_ses_type("bad-mailbox", 550, NULL), "Permanent");
	assert_string_equal(bounce_ses_type(NULL, 550, &sub), "Undetermined");

	bounce_class_expired(&bc);
	assert_string_equal(bc.category, "message-expired");
	assert_string_equal(bc.ses_type, "Permanent");
	assert_string_equal(bc.ses_subtype, "General");
	assert_int_equal(bc.rule_line, 0);

	assert_true(bounce_category_valid("routing-errors"));
	assert_false(bounce_category_valid("suppressed"));
	assert_false(bounce_category_valid(NULL));
}

/* conf/bounce-rules.conf and the compiled-in copy are the same bytes. */
static void
test_builtin_matches_file(void **state)
{
	(void)state;
	unit_builtin_matches_file("bounce-rules.conf", bounce_rules_builtin, "bounce_rules_builtin", "bounce.c");
}

/* Several threads classify with one rule set at once. */
struct thread_arg {
	const struct bounce_rules *r;
	int bad;
};

static void *
classify_loop(void *p)
{
	struct thread_arg *a = p;

	for (int n = 0; n < 20; n++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct bounce_class bc;

			bounce_classify(a->r, cases[i].code, cases[i].enh, cases[i].text, &bc);
			if (strcmp(bc.category, cases[i].category) != 0)
				a->bad++;
		}
	}
	return NULL;
}

static void
test_threads(void **state)
{
	struct bounce_rules *r = bounce_rules_load(NULL, errbuf, sizeof(errbuf));
	pthread_t t[4];
	struct thread_arg a[4];

	(void)state;
	assert_non_null(r);
	for (int i = 0; i < 4; i++) {
		a[i].r = r;
		a[i].bad = 0;
		assert_int_equal(pthread_create(&t[i], NULL, classify_loop, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(a[i].bad, 0);
	}
	bounce_rules_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_replies),
		cmocka_unit_test(test_rule_lines),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_matchers),
		cmocka_unit_test(test_rule_order),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_ses_mapping),
		cmocka_unit_test(test_builtin_matches_file),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
