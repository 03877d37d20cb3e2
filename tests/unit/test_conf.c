/*
 * conf.c: good configs (every block kind, one-line blocks, quoting), the
 * effective limits (default < provider < domain, with the origin of each
 * value), the lookups, and every error path with its exact
 * "name:LINE: message" text. DKIM key loading is tested in test_dkim.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "util.h"

static char tmpdir[64];
static char cert[128], key[128], users[128], pwfile[128];
static char errbuf[8192];

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int
group_setup(void **state)
{
	char *d;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sluice-test-conf-XXXXXX");
	d = mkdtemp(tmpdir);
	if (d == NULL)
		return -1;
	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
	snprintf(users, sizeof(users), "%s/users", tmpdir);
	snprintf(pwfile, sizeof(pwfile), "%s/route.pw", tmpdir);
	write_text(cert, "not parsed at config load\n");
	write_text(key, "not parsed at config load\n");
	write_text(users, "alice:x\n");
	write_text(pwfile, "s3cret pass\r\n\n");
	log_open("/dev/null", LOG_ERR);
	return 0;
}

static int
group_teardown(void **state)
{
	char path[256];

	(void)state;
	unlink(cert);
	unlink(key);
	unlink(users);
	unlink(pwfile);
	snprintf(path, sizeof(path), "%s/sluice.conf", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

/* Load text as "t.conf"; fail the test with the errors if it does not load. */
static struct config *
load_ok(const char *text)
{
	struct config *c;

	memset(errbuf, 'x', sizeof(errbuf));
	c = conf_load_string(text, "t.conf", errbuf, sizeof(errbuf));
	if (c == NULL)
		fail_msg("config did not load: %s", errbuf);
	assert_string_equal(errbuf, "");
	return c;
}

/* Load text as "t.conf", expect failure, return the error text. */
static const char *
load_err(const char *text)
{
	struct config *c;

	memset(errbuf, 'x', sizeof(errbuf));
	c = conf_load_string(text, "t.conf", errbuf, sizeof(errbuf));
	if (c != NULL) {
		conf_free(c);
		fail_msg("config loaded but should not have:\n%s", text);
	}
	return errbuf;
}

static void
expect_err(const char *text, const char *want)
{
	const char *got = load_err(text);

	if (strcmp(got, want) != 0)
		fail_msg("config:\n%s\n--- expected errors:\n%s\n--- got:\n%s", text, want, got);
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const struct sockaddr *
sa(const char *addr)
{
	static struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)&ss;
}

static bool
relays(const struct listener_conf *l, const char *addr)
{
	for (int i = 0; i < l->nrelay; i++)
		if (cidr_match(&l->relay_from[i], sa(addr)))
			return true;
	return false;
}

/* A config with every block kind; line numbers matter (origins). */
static const char full_conf[] =
	"# a full config: every block kind\n"                               /* 1 */
	"hostname mta.test\n"                                                /* 2 */
	"spool /var/tmp/sluice-test-spool\n"                                 /* 3 */
	"workers 4; spool-threads 2\n"                                       /* 4 */
	"resolver 127.0.0.1:5353\n"                                          /* 5 */
	"smtp-port 2525\n"                                                   /* 6 */
	"log-level debug\n"                                                  /* 7 */
	"bounce-from \"Bounces <bounces@mta.test>\"\n"                       /* 8 */
	"user mail   # the service user\n"                                   /* 9 */
	"listener 127.0.0.1:2525 {\n"                                        /* 10 */
	"    relay-from 127.0.0.0/8,::1\n"                                   /* 11 */
	"    relay-from 10.0.0.0/8\n"                                        /* 12 */
	"    max-message-size 10M\n"                                         /* 13 */
	"    max-recipients 50\n"                                            /* 14 */
	"    smtputf8 no\n"                                                  /* 15 */
	"    command-timeout 1m\n"                                           /* 16 */
	"    data-timeout 2m\n"                                              /* 17 */
	"}\n"                                                                /* 18 */
	"listener [::1]:2587 { auth none max-errors 3 }\n"                   /* 19 */
	"source s1 { address 127.0.0.2 ehlo s1.test }\n"                     /* 20 */
	"source s2 {\n"                                                      /* 21 */
	"    address 127.0.0.3\n"                                            /* 22 */
	"    ehlo \"s2.test\"\n"                                             /* 23 */
	"}\n"                                                                /* 24 */
	"source bare { }\n"                                                  /* 25 */
	"pool bulk {\n"                                                      /* 26 */
	"    source s1 weight 3\n"                                           /* 27 */
	"    source s2\n"                                                    /* 28 */
	"    sender-domain News.Example.com,promo.example.com\n"             /* 29 */
	"    # dkim-domain needs a dkim block, i.e. a key: see test_dkim.c\n" /* 30 */
	"}\n"                                                                /* 31 */
	"pool default { source bare }\n"                                     /* 32 */
	"domain * {\n"                                                       /* 33 */
	"    max-smtp-out 10\n"                                              /* 34 */
	"    retry-after 1m,5m\n"                                            /* 35 */
	"    bounce-after 1d\n"                                              /* 36 */
	"    tls required\n"                                                 /* 37 */
	"    smtp-port 0\n"                                                  /* 38 */
	"}\n"                                                                /* 39 */
	"provider gmail {\n"                                                 /* 40 */
	"    mx *.google.com,*.GoogleMail.com\n"                             /* 41 */
	"    mx aspmx*.example.net\n"                                        /* 42 */
	"    max-smtp-out 5\n"                                               /* 43 */
	"    max-msg-rate 1000/h\n"                                          /* 44 */
	"    tls verify\n"                                                   /* 45 */
	"}\n"                                                                /* 46 */
	"domain gmail.com { max-smtp-out 20 max-msg-per-connection 100 max-msg-rate 3600/h retry-after 5m,15m,1h bounce-after 2d }\n" /* 47 */
	"domain Example.ORG {\n"                                             /* 48 */
	"    route [127.0.0.1]:2526\n"                                       /* 49 */
	"    mx-rollup no\n"                                                 /* 50 */
	"    smtp-port 2526\n"                                               /* 51 */
	"    connect-timeout 500ms\n"                                        /* 52 */
	"    idle-timeout 0s\n"                                              /* 53 */
	"}\n";                                                               /* 54 */

static void
test_full_config(void **state)
{
	struct config *c;
	const struct listener_conf *l;

	(void)state;
	c = load_ok(full_conf);
	assert_string_equal(c->path, "t.conf");
	assert_string_equal(c->hostname, "mta.test");
	assert_string_equal(c->spool, "/var/tmp/sluice-test-spool");
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->spool_threads, 2);
	assert_true(c->has_resolver);
	assert_string_equal(c->resolver.host, "127.0.0.1");
	assert_int_equal(c->resolver.port, 5353);
	assert_int_equal(c->smtp_port, 2525);
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_string_equal(c->bounce_from, "Bounces <bounces@mta.test>");
	assert_string_equal(c->user, "mail");
	/* defaults of what the file does not say */
	assert_true(ends_with(c->pidfile, "/sluice/sluiced.pid"));
	assert_true(ends_with(c->control_socket, "/sluice/control.sock"));
	assert_true(ends_with(c->store, "/lib/sluice/store"));
	assert_string_equal(c->log, "-");
	assert_null(c->accounting);

	/* listeners */
	assert_int_equal(c->nlisteners, 2);
	l = &c->listeners[0];
	assert_string_equal(l->name, "127.0.0.1:2525");
	assert_string_equal(l->addr.host, "127.0.0.1");
	assert_int_equal(l->addr.port, 2525);
	assert_int_equal(l->line, 10);
	assert_string_equal(l->file, "t.conf");
	assert_int_equal(l->nrelay, 3);
	assert_int_equal(l->relay_from[0].family, AF_INET);
	assert_int_equal(l->relay_from[0].bits, 8);
	assert_int_equal(l->relay_from[1].family, AF_INET6);
	assert_int_equal(l->relay_from[1].bits, 128);
	assert_int_equal(l->relay_from[2].bits, 8);
	assert_true(relays(l, "127.0.0.1"));
	assert_true(relays(l, "::1"));
	assert_true(relays(l, "10.9.8.7"));
	assert_true(relays(l, "::ffff:127.0.0.5"));
	assert_false(relays(l, "192.0.2.1"));
	assert_false(relays(l, "::2"));
	assert_true(l->max_message_size == 10ULL * 1024 * 1024);
	assert_int_equal(l->max_recipients, 50);
	assert_false(l->smtputf8);
	assert_int_equal(l->command_timeout, 60000);
	assert_int_equal(l->data_timeout, 120000);
	assert_int_equal(l->auth, AUTH_NONE);
	assert_null(l->tls_cert);
	assert_null(l->tls_key);
	assert_null(l->auth_users);
	assert_int_equal(l->max_line_length, 4096);
	assert_int_equal(l->max_headers, 1000);
	assert_int_equal(l->max_connections, 1000);
	assert_int_equal(l->max_conn_per_ip, 100);
	assert_int_equal(l->max_errors, 10);
	l = &c->listeners[1];
	assert_string_equal(l->name, "[::1]:2587");
	assert_string_equal(l->addr.host, "::1");
	assert_int_equal(l->addr.port, 2587);
	assert_int_equal(l->line, 19);
	assert_int_equal(l->nrelay, 0);
	assert_int_equal(l->max_errors, 3);
	assert_true(l->max_message_size == 50ULL * 1024 * 1024);
	assert_true(l->smtputf8);
	assert_int_equal(l->command_timeout, 300000);

	/* sources */
	assert_int_equal(c->nsources, 3);
	assert_string_equal(c->sources[0].name, "s1");
	assert_string_equal(c->sources[0].address, "127.0.0.2");
	assert_string_equal(c->sources[0].ehlo, "s1.test");
	assert_int_equal(c->sources[0].line, 20);
	assert_string_equal(c->sources[1].address, "127.0.0.3");
	assert_string_equal(c->sources[1].ehlo, "s2.test");
	assert_int_equal(c->sources[1].line, 21);
	assert_null(c->sources[2].address);
	assert_null(c->sources[2].ehlo);
	assert_ptr_equal(conf_source(c, "s2"), &c->sources[1]);
	assert_null(conf_source(c, "s3"));

	/* pools */
	assert_int_equal(c->npools, 2);
	{
		struct pool_conf *p = conf_pool(c, "BULK");
		assert_ptr_equal(p, &c->pools[0]);
		assert_int_equal(p->line, 26);
		assert_int_equal(p->nmembers, 2);
		assert_ptr_equal(p->members[0].source, conf_source(c, "s1"));
		assert_int_equal(p->members[0].weight, 3);
		assert_ptr_equal(p->members[1].source, conf_source(c, "s2"));
		assert_int_equal(p->members[1].weight, 1);
		assert_int_equal(p->nsender_domains, 2);
		assert_string_equal(p->sender_domains[0], "news.example.com");
		assert_string_equal(p->sender_domains[1], "promo.example.com");
		assert_null(p->dkim_domain);
		p = conf_pool(c, "default");
		assert_int_equal(p->nmembers, 1);
		assert_ptr_equal(p->members[0].source, conf_source(c, "bare"));
		assert_null(p->dkim_domain);
		assert_ptr_equal(conf_default_pool(c), p);
		assert_null(conf_pool(c, "nosuch"));
	}

	/* domains: "*" first, names lower-cased */
	assert_int_equal(c->ndomains, 3);
	assert_string_equal(c->domains[0].name, "*");
	assert_int_equal(c->domains[0].line, 33);
	assert_string_equal(c->domains[1].name, "gmail.com");
	assert_int_equal(c->domains[1].line, 47);
	assert_string_equal(c->domains[2].name, "example.org");
	assert_ptr_equal(conf_domain(c, "EXAMPLE.org"), &c->domains[2]);
	assert_null(conf_domain(c, "*"));
	assert_null(conf_domain(c, "sub.example.org"));

	/* providers */
	assert_int_equal(c->nproviders, 1);
	assert_string_equal(c->providers[0].name, "gmail");
	assert_int_equal(c->providers[0].nmx, 3);
	assert_string_equal(c->providers[0].mx[0], "*.google.com");
	assert_string_equal(c->providers[0].mx[1], "*.googlemail.com");
	assert_string_equal(c->providers[0].mx[2], "aspmx*.example.net");
	assert_int_equal(c->ndkim, 0);
	conf_free(c);
}

static void
test_limits_merge(void **state)
{
	struct config *c;
	struct site_limits l;
	const struct provider_conf *gmail;

	(void)state;
	c = load_ok(full_conf);
	gmail = &c->providers[0];

	/* a domain with no block and no provider: "*" over the built-in defaults */
	conf_limits(c, "other.test", NULL, &l);
	assert_int_equal(l.max_smtp_out, 10);
	assert_string_equal(l.origin[L_MAX_SMTP_OUT], "t.conf:34");
	assert_int_equal(l.max_msg_per_conn, 100);
	assert_string_equal(l.origin[L_MAX_MSG_PER_CONN], "default");
	assert_int_equal(l.max_rcpt_per_msg, 100);
	assert_true(l.max_msg_rate.count == 0);
	assert_string_equal(l.origin[L_MAX_MSG_RATE], "default");
	assert_int_equal(l.nretry, 2);
	assert_int_equal(l.retry_after[0], 60000);
	assert_int_equal(l.retry_after[1], 300000);
	assert_string_equal(l.origin[L_RETRY_AFTER], "t.conf:35");
	assert_int_equal(l.bounce_after, 86400000);
	assert_string_equal(l.origin[L_BOUNCE_AFTER], "t.conf:36");
	assert_int_equal(l.tls, TLS_REQUIRED);
	assert_string_equal(l.origin[L_TLS], "t.conf:37");
	assert_int_equal(l.smtp_port, 2525);     /* 0 = the global smtp-port */
	assert_string_equal(l.origin[L_SMTP_PORT], "t.conf:38");
	assert_true(l.mx_rollup);
	assert_false(l.has_route);
	assert_null(l.route_user);
	assert_int_equal(l.connect_timeout, 30000);
	assert_int_equal(l.greeting_timeout, 300000);
	assert_int_equal(l.data_timeout, 120000);
	assert_int_equal(l.data_block_timeout, 180000);
	assert_int_equal(l.dot_timeout, 600000);
	assert_int_equal(l.idle_timeout, 5000);
	assert_string_equal(l.origin[L_IDLE_TIMEOUT], "default");
	assert_true(l.set & (1U << L_MAX_SMTP_OUT));
	assert_false(l.set & (1U << L_MAX_MSG_PER_CONN));
	/* NULL domain: the same */
	{
		struct site_limits l2;
		conf_limits(c, NULL, NULL, &l2);
		assert_int_equal(l2.max_smtp_out, 10);
		assert_string_equal(l2.origin[L_TLS], "t.conf:37");
	}

	/* the provider over "*" */
	conf_limits(c, "googlemail.example", gmail, &l);
	assert_int_equal(l.max_smtp_out, 5);
	assert_string_equal(l.origin[L_MAX_SMTP_OUT], "t.conf:43");
	assert_true(l.max_msg_rate.count == 1000);
	assert_int_equal(l.max_msg_rate.per_ms, 3600000);
	assert_string_equal(l.origin[L_MAX_MSG_RATE], "t.conf:44");
	assert_int_equal(l.tls, TLS_VERIFY);
	assert_string_equal(l.origin[L_TLS], "t.conf:45");
	assert_int_equal(l.nretry, 2);
	assert_string_equal(l.origin[L_RETRY_AFTER], "t.conf:35");
	assert_int_equal(l.max_msg_per_conn, 100);
	assert_string_equal(l.origin[L_MAX_MSG_PER_CONN], "default");

	/* the domain over the provider over "*" */
	conf_limits(c, "gmail.com", gmail, &l);
	assert_int_equal(l.max_smtp_out, 20);
	assert_string_equal(l.origin[L_MAX_SMTP_OUT], "t.conf:47");
	assert_int_equal(l.max_msg_per_conn, 100);
	assert_string_equal(l.origin[L_MAX_MSG_PER_CONN], "t.conf:47");
	assert_true(l.max_msg_rate.count == 3600);
	assert_int_equal(l.max_msg_rate.per_ms, 3600000);
	assert_string_equal(l.origin[L_MAX_MSG_RATE], "t.conf:47");
	assert_int_equal(l.nretry, 3);
	assert_int_equal(l.retry_after[0], 300000);
	assert_int_equal(l.retry_after[1], 900000);
	assert_int_equal(l.retry_after[2], 3600000);
	assert_string_equal(l.origin[L_RETRY_AFTER], "t.conf:47");
	assert_int_equal(l.bounce_after, 2 * 86400000LL);
	assert_string_equal(l.origin[L_BOUNCE_AFTER], "t.conf:47");
	assert_int_equal(l.tls, TLS_VERIFY);                   /* provider */
	assert_string_equal(l.origin[L_TLS], "t.conf:45");
	assert_int_equal(l.max_rcpt_per_msg, 100);
	assert_string_equal(l.origin[L_MAX_RCPT_PER_MSG], "default");
	assert_true(l.set & (1U << L_MAX_MSG_PER_CONN));
	assert_true(l.set & (1U << L_TLS));
	assert_false(l.set & (1U << L_ROUTE));

	/* the same domain without the provider; names are case-insensitive */
	conf_limits(c, "GMAIL.COM", NULL, &l);
	assert_int_equal(l.max_smtp_out, 20);
	assert_int_equal(l.tls, TLS_REQUIRED);
	assert_string_equal(l.origin[L_TLS], "t.conf:37");

	/* a static route and per-domain timeouts and port */
	conf_limits(c, "example.org", NULL, &l);
	assert_true(l.has_route);
	assert_string_equal(l.route.host, "127.0.0.1");
	assert_int_equal(l.route.port, 2526);
	assert_string_equal(l.origin[L_ROUTE], "t.conf:49");
	assert_false(l.mx_rollup);
	assert_string_equal(l.origin[L_MX_ROLLUP], "t.conf:50");
	assert_int_equal(l.smtp_port, 2526);
	assert_string_equal(l.origin[L_SMTP_PORT], "t.conf:51");
	assert_int_equal(l.connect_timeout, 500);
	assert_string_equal(l.origin[L_CONNECT_TIMEOUT], "t.conf:52");
	assert_int_equal(l.idle_timeout, 0);
	assert_string_equal(l.origin[L_IDLE_TIMEOUT], "t.conf:53");
	assert_int_equal(l.max_smtp_out, 10);
	assert_string_equal(l.origin[L_MAX_SMTP_OUT], "t.conf:34");

	/* the "*" block itself is not changed by the merges */
	assert_int_equal(c->domains[0].lim.max_smtp_out, 10);
	assert_int_equal(c->domains[0].lim.smtp_port, 0);
	conf_free(c);
}

static void
test_limits_without_star_block(void **state)
{
	struct config *c;
	struct site_limits l;

	(void)state;
	c = load_ok("provider p {\n  mx mx*.p.test\n  max-connect-rate 10/m\n}\n"
	    "domain d.test {\n  max-rcpt-per-message 5\n}\n");
	conf_limits(c, "d.test", &c->providers[0], &l);
	/* every value has an origin */
	for (int i = 0; i < L_COUNT; i++) {
		if (i == L_ROUTE || i == L_ROUTE_AUTH)
			continue;
		assert_non_null(l.origin[i]);
	}
	assert_int_equal(l.max_smtp_out, 20);
	assert_string_equal(l.origin[L_MAX_SMTP_OUT], "default");
	assert_int_equal(l.nretry, 7);
	assert_int_equal(l.retry_after[0], 300000);
	assert_int_equal(l.retry_after[6], 4 * 3600000LL);
	assert_string_equal(l.origin[L_RETRY_AFTER], "default");
	assert_int_equal(l.bounce_after, 4 * 86400000LL);
	assert_int_equal(l.tls, TLS_OPPORTUNISTIC);
	assert_true(l.mx_rollup);
	assert_int_equal(l.smtp_port, 25);
	assert_true(l.max_connect_rate.count == 10);
	assert_int_equal(l.max_connect_rate.per_ms, 60000);
	assert_string_equal(l.origin[L_MAX_CONNECT_RATE], "t.conf:3");
	assert_int_equal(l.max_rcpt_per_msg, 5);
	assert_string_equal(l.origin[L_MAX_RCPT_PER_MSG], "t.conf:6");
	assert_int_equal(c->workers, 0);         /* auto */
	assert_int_equal(c->spool_threads, 8);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_false(c->has_resolver);
	assert_non_null(c->hostname);            /* the system's */
	{
		char *want = xasprintf("MAILER-DAEMON@%s", c->hostname);
		assert_string_equal(c->bounce_from, want);
		free(want);
	}
	conf_free(c);
}

static void
test_retry_delay(void **state)
{
	struct config *c;
	struct site_limits l;

	(void)state;
	c = load_ok(full_conf);
	conf_limits(c, "gmail.com", NULL, &l);
	assert_int_equal(conf_retry_delay(&l, 1), 300000);
	assert_int_equal(conf_retry_delay(&l, 2), 900000);
	assert_int_equal(conf_retry_delay(&l, 3), 3600000);
	/* the last step repeats */
	assert_int_equal(conf_retry_delay(&l, 4), 3600000);
	assert_int_equal(conf_retry_delay(&l, 1000), 3600000);
	assert_int_equal(conf_retry_delay(&l, 0), 300000);
	conf_limits(c, "other.test", NULL, &l);
	assert_int_equal(conf_retry_delay(&l, 1), 60000);
	assert_int_equal(conf_retry_delay(&l, 2), 300000);
	assert_int_equal(conf_retry_delay(&l, 3), 300000);
	/* no schedule at all: 5 minutes */
	l.nretry = 0;
	assert_int_equal(conf_retry_delay(&l, 1), 300000);
	conf_free(c);
}

static void
test_lookups(void **state)
{
	struct config *c;

	(void)state;
	c = load_ok(full_conf);
	assert_ptr_equal(conf_pool_for_sender(c, "news@news.example.com"), &c->pools[0]);
	assert_ptr_equal(conf_pool_for_sender(c, "x@NEWS.Example.COM"), &c->pools[0]);
	assert_ptr_equal(conf_pool_for_sender(c, "x@promo.example.com"), &c->pools[0]);
	assert_ptr_equal(conf_pool_for_sender(c, "\"a@b\"@promo.example.com"), &c->pools[0]);
	assert_null(conf_pool_for_sender(c, "x@sub.news.example.com"));
	assert_null(conf_pool_for_sender(c, "x@example.com"));
	assert_null(conf_pool_for_sender(c, ""));
	assert_null(conf_pool_for_sender(c, "postmaster"));

	assert_ptr_equal(conf_provider_for_mx(c, "alt1.gmail-smtp-in.l.google.com"), &c->providers[0]);
	assert_ptr_equal(conf_provider_for_mx(c, "MX.GOOGLEMAIL.COM"), &c->providers[0]);
	assert_ptr_equal(conf_provider_for_mx(c, "aspmx3.example.net"), &c->providers[0]);
	assert_null(conf_provider_for_mx(c, "mx.example.net"));
	assert_null(conf_provider_for_mx(c, "google.com"));
	assert_null(conf_provider_for_mx(c, "google.com.evil.test"));

	assert_string_equal(conf_limit_name(L_MAX_SMTP_OUT), "max-smtp-out");
	assert_string_equal(conf_limit_name(L_MAX_MSG_PER_CONN), "max-msg-per-connection");
	assert_string_equal(conf_limit_name(L_SMTP_PORT), "smtp-port");
	assert_string_equal(conf_limit_name(L_COUNT), "?");
	for (int i = 0; i < L_COUNT; i++)
		assert_non_null(conf_limit_name((enum limit_idx)i));
	conf_free(c);

	/* no pool named "default": the first one */
	c = load_ok("source a { }\npool first { source a }\npool second { source a }\n");
	assert_ptr_equal(conf_default_pool(c), &c->pools[0]);
	conf_free(c);
	c = load_ok("");
	assert_null(conf_default_pool(c));
	assert_null(conf_pool_for_sender(c, "a@b.test"));
	assert_null(conf_provider_for_mx(c, "mx.b.test"));
	conf_free(c);
}

static void
test_syntax_details(void **state)
{
	struct config *c;
	char text[2048];

	(void)state;
	/* quotes, escapes, comments, ';' as a separator, tabs, CRLF */
	c = load_ok("hostname \"a \\\"quoted\\\" # name\" # comment\r\n"
	    "\tsource s { ehlo \"x{y}\"; address 127.0.0.9 } # trailing\n"
	    "# the end");
	assert_string_equal(c->hostname, "a \"quoted\" # name");
	assert_string_equal(c->sources[0].ehlo, "x{y}");
	assert_string_equal(c->sources[0].address, "127.0.0.9");
	conf_free(c);
	c = load_ok("hostname \"}\"\nsource s {\n  ehlo \"{\"\n}\n");
	assert_string_equal(c->hostname, "}");
	assert_string_equal(c->sources[0].ehlo, "{");
	conf_free(c);

	/* one-line blocks of every kind */
	c = load_ok("listener 127.0.0.1:25 { relay-from 127.0.0.1 }\n"
	    "source s1 { address 127.0.0.2 ehlo s1.test }\n"
	    "pool p { source s1 weight 2 }\n"
	    "provider yahoo { mx *.yahoodns.net max-smtp-out 2 }\n"
	    "domain gmail.com { max-smtp-out 20 max-msg-per-connection 100 max-msg-rate 3600/h retry-after 5m,15m,1h bounce-after 2d }\n"
	    "domain * { tls none }\n");
	assert_int_equal(c->listeners[0].nrelay, 1);
	assert_int_equal(c->pools[0].members[0].weight, 2);
	assert_string_equal(c->providers[0].mx[0], "*.yahoodns.net");
	assert_int_equal(c->providers[0].lim.max_smtp_out, 2);
	{
		const struct domain_conf *d = conf_domain(c, "gmail.com");
		assert_non_null(d);
		assert_int_equal(d->lim.max_smtp_out, 20);
		assert_int_equal(d->lim.max_msg_per_conn, 100);
		assert_true(d->lim.max_msg_rate.count == 3600);
		assert_int_equal(d->lim.nretry, 3);
		assert_int_equal(d->lim.retry_after[2], 3600000);
		assert_int_equal(d->lim.bounce_after, 2 * 86400000LL);
		assert_string_equal(d->lim.origin[L_BOUNCE_AFTER], "t.conf:5");
	}
	assert_int_equal(c->domains[0].lim.tls, TLS_NONE);
	conf_free(c);

	/* a route with authentication: the password file's trailing newlines go */
	snprintf(text, sizeof(text),
	    "domain relay.test {\n  route smarthost.test:587\n  route-auth user@relay %s\n}\n", pwfile);
	c = load_ok(text);
	{
		struct site_limits l;
		conf_limits(c, "relay.test", NULL, &l);
		assert_true(l.has_route);
		assert_string_equal(l.route.host, "smarthost.test");
		assert_int_equal(l.route.port, 587);
		assert_string_equal(l.route_user, "user@relay");
		assert_string_equal(l.route_pass, "s3cret pass");
		assert_string_equal(l.origin[L_ROUTE_AUTH], "t.conf:3");
		conf_limits(c, "other.test", NULL, &l);
		assert_null(l.route_user);
		assert_false(l.has_route);
	}
	conf_free(c);

	/* a listener with TLS and AUTH */
	snprintf(text, sizeof(text),
	    "listener 0.0.0.0:587 {\n  auth required\n  auth-users %s\n"
	    "  tls-certificate %s\n  tls-key %s\n}\n", users, cert, key);
	c = load_ok(text);
	assert_int_equal(c->listeners[0].auth, AUTH_REQUIRED);
	assert_string_equal(c->listeners[0].auth_users, users);
	assert_string_equal(c->listeners[0].tls_cert, cert);
	assert_string_equal(c->listeners[0].tls_key, key);
	conf_free(c);

	/* limits at the edges of their ranges */
	c = load_ok("workers 64\nspool-threads 1\nsmtp-port 65535\n"
	    "listener 127.0.0.1:1 { max-message-size 1K max-line-length 512 max-recipients 100000 }\n"
	    "domain * { max-smtp-out 10000 max-rcpt-per-message 1000 smtp-port 65535 idle-timeout 0 }\n"
	    "domain a.test { max-smtp-out 1 connect-timeout 100ms bounce-after 1s retry-after 1s }\n");
	assert_int_equal(c->workers, 64);
	assert_int_equal(c->smtp_port, 65535);
	assert_true(c->listeners[0].max_message_size == 1024);
	assert_int_equal(c->domains[0].lim.max_smtp_out, 10000);
	assert_int_equal(c->domains[1].lim.connect_timeout, 100);
	conf_free(c);

	/* 32 retry steps are allowed */
	{
		char *p = text;
		p += sprintf(p, "domain * {\n  retry-after ");
		for (int i = 1; i <= MAX_RETRY_STEPS; i++)
			p += sprintf(p, "%s%dm", i > 1 ? "," : "", i);
		sprintf(p, "\n}\n");
		c = load_ok(text);
		assert_int_equal(c->domains[0].lim.nretry, MAX_RETRY_STEPS);
		assert_int_equal(c->domains[0].lim.retry_after[31], 32 * 60000);
		conf_free(c);
	}
}

static void
test_builtin_default(void **state)
{
	struct config *c;
	struct site_limits l;

	(void)state;
	memset(errbuf, 'x', sizeof(errbuf));
	c = conf_load(NULL, errbuf, sizeof(errbuf));
	if (c == NULL)
		fail_msg("the built-in config does not parse:\n%s", errbuf);
	assert_string_equal(errbuf, "");
	assert_string_equal(c->spool, "queue");
	assert_string_equal(c->pidfile, "sluiced.pid");
	assert_string_equal(c->control_socket, "sluice.sock");
	assert_string_equal(c->accounting, "-");
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].name, "127.0.0.1:2525");
	assert_int_equal(c->listeners[0].addr.port, 2525);
	assert_true(relays(&c->listeners[0], "127.0.0.1"));
	assert_false(relays(&c->listeners[0], "192.0.2.1"));
	conf_limits(c, "anything.test", NULL, &l);
	assert_true(l.has_route);
	assert_string_equal(l.route.host, "127.0.0.1");
	assert_int_equal(l.route.port, 2526);
	assert_int_equal(l.nretry, 3);
	assert_int_equal(conf_retry_delay(&l, 1), 10000);
	assert_int_equal(conf_retry_delay(&l, 5), 300000);
	assert_int_equal(l.bounce_after, 3600000);
	assert_string_equal(l.origin[L_ROUTE], "(built-in default config):12");
	conf_free(c);
}

static void
test_load_file(void **state)
{
	char path[256], want[512];
	struct config *c;

	(void)state;
	snprintf(path, sizeof(path), "%s/sluice.conf", tmpdir);
	write_text(path, "hostname file.test\ndomain * {\n  max-smtp-out 3\n}\n");
	c = conf_load(path, errbuf, sizeof(errbuf));
	assert_non_null(c);
	assert_string_equal(c->path, path);
	assert_string_equal(c->hostname, "file.test");
	snprintf(want, sizeof(want), "%s:3", path);
	assert_string_equal(c->domains[0].lim.origin[L_MAX_SMTP_OUT], want);
	conf_free(c);

	/* errors name the file */
	write_text(path, "hostname a\nbogus\n");
	assert_null(conf_load(path, errbuf, sizeof(errbuf)));
	snprintf(want, sizeof(want), "%s:2: unknown directive \"bogus\"", path);
	assert_string_equal(errbuf, want);

	/* a missing file */
	snprintf(path, sizeof(path), "%s/nonexistent.conf", tmpdir);
	assert_null(conf_load(path, errbuf, sizeof(errbuf)));
	snprintf(want, sizeof(want), "%s:0: cannot read config: %s", path, strerror(ENOENT));
	assert_string_equal(errbuf, want);

	/* install and free: the old config stays valid until conf_free_all */
	c = load_ok("hostname one.test\n");
	conf_install(c);
	assert_ptr_equal(conf, c);
	conf_install(load_ok("hostname two.test\n"));
	assert_string_equal(conf->hostname, "two.test");
	assert_string_equal(c->hostname, "one.test");
	conf_free_all();
	assert_null(conf);
}

/* ---- errors ---- */

static void
test_err_unknown_and_misplaced(void **state)
{
	(void)state;
	expect_err("frobnicate 1\n", "t.conf:1: unknown directive \"frobnicate\"");
	expect_err("hostname a\n\n\nfrobnicate\n", "t.conf:4: unknown directive \"frobnicate\"");
	expect_err("domain a.test {\n  max-smtp-outt 5\n}\n",
	    "t.conf:2: unknown directive \"max-smtp-outt\"");
	/* an unknown block is skipped whole, the rest is still read */
	expect_err("frob x {\n  hostname y\n  mx z\n}\nworkers 0\n",
	    "t.conf:1: unknown directive \"frob\"\n"
	    "t.conf:5: workers: 0 is out of range (1-64)");
	/* known, but not here */
	expect_err("listener 127.0.0.1:25 {\n  max-smtp-out 5\n}\n",
	    "t.conf:2: max-smtp-out is not allowed in a listener block");
	expect_err("address 1.2.3.4\n", "t.conf:1: address is not allowed in the top level");
	expect_err("max-smtp-out 5\n", "t.conf:1: max-smtp-out is not allowed in the top level");
	expect_err("provider p {\n  mx x\n  route [h]:25\n}\n",
	    "t.conf:3: route is not allowed in a provider block");
	expect_err("source s {\n  relay-from 1.2.3.4\n}\n",
	    "t.conf:2: relay-from is not allowed in a source block");
	expect_err("source s { }\npool p {\n  source s weight 1\n  mx x\n}\n",
	    "t.conf:4: mx is not allowed in a pool block");
	expect_err("domain a.test {\n  hostname h\n}\n",
	    "t.conf:2: hostname is not allowed in a domain block");
	expect_err("listener 127.0.0.1:25 {\n  source s1\n}\n",
	    "t.conf:2: source is not allowed in a listener block");
	expect_err("dkim a.test {\n  max-smtp-out 1\n}\n",
	    "t.conf:2: max-smtp-out is not allowed in a dkim block\n"
	    "t.conf:1: dkim a.test has no selector");
	/* blocks do not nest */
	expect_err("domain a.test {\n  domain b.test {\n    max-smtp-out 0\n  }\n}\n",
	    "t.conf:2: domain is not allowed in a domain block");
	expect_err("{\n", "t.conf:1: unexpected '{'");
}

static void
test_err_arguments(void **state)
{
	(void)state;
	expect_err("hostname\n", "t.conf:1: hostname: expected NAME");
	expect_err("hostname\nspool /x\n", "t.conf:1: hostname: expected NAME");
	expect_err("domain a.test {\n  max-smtp-out\n}\n", "t.conf:2: max-smtp-out: expected N");
	expect_err("domain a.test { max-smtp-out }\n", "t.conf:1: max-smtp-out: expected N");
	expect_err("domain a.test {\n  route-auth u\n}\n",
	    "t.conf:2: route-auth: expected USER PASSWORD-FILE");
	expect_err("dkim a.test {\n  selector s1 rsa\n}\n",
	    "t.conf:2: selector: expected NAME rsa|ed25519 KEYFILE\n"
	    "t.conf:1: dkim a.test has no selector");
	expect_err("pool p {\n  source\n}\n",
	    "t.conf:2: source: expected NAME [weight N]\n"
	    "t.conf:1: pool p has no source");
	/* one-line pools list several sources, so a stray word is a directive */
	expect_err("source s { }\npool p {\n  source s heavy 3\n}\n",
	    "t.conf:3: unknown directive \"heavy\"");
	expect_err("source s { }\npool p {\n  source s weight\n}\n",
	    "t.conf:3: source: expected \"source NAME [weight N]\"\n"
	    "t.conf:2: pool p has no source");
	expect_err("source s { }\npool p {\n  source s weight 0\n}\n",
	    "t.conf:3: source: weight must be 1-1000000, not \"0\"\n"
	    "t.conf:2: pool p has no source");
	expect_err("source s { }\npool p {\n  source s weight 1000001\n}\n",
	    "t.conf:3: source: weight must be 1-1000000, not \"1000001\"\n"
	    "t.conf:2: pool p has no source");
	expect_err("source s { }\npool p {\n  source s\n  source s weight 2\n}\n",
	    "t.conf:4: source s is already in pool p");
	/* a block without its '{' */
	expect_err("source s1\n", "t.conf:1: source s1: expected '{'");
	/* a listener address without a port */
	expect_err("listener 127.0.0.1 {\n  max-errors 0\n}\n",
	    "t.conf:1: listener: \"127.0.0.1\": expected ADDRESS:PORT");
	expect_err("listener [::1 {\n}\n",
	    "t.conf:1: listener: \"[::1\": expected ADDRESS:PORT");
}

static void
test_err_types(void **state)
{
	(void)state;
	expect_err("listener 127.0.0.1:25 {\n  max-message-size 10X\n}\n",
	    "t.conf:2: max-message-size: \"10X\": unknown size unit (use K, M or G)");
	expect_err("listener 127.0.0.1:25 {\n  max-message-size big\n}\n",
	    "t.conf:2: max-message-size: \"big\": expected a size like 512, 64K, 50M or 1G");
	expect_err("domain * {\n  bounce-after soon\n}\n",
	    "t.conf:2: bounce-after: \"soon\": expected a duration like 500ms, 30s, 10m, 4h or 2d");
	expect_err("domain * {\n  max-msg-rate fast\n}\n",
	    "t.conf:2: max-msg-rate: \"fast\": expected a rate like 3600/h, 20/m, 5/s or 100/10m");
	expect_err("provider p {\n  mx m\n  max-connect-rate 10\n}\n",
	    "t.conf:3: max-connect-rate: \"10\": expected a rate like 3600/h, 20/m, 5/s or 100/10m");
	expect_err("domain * {\n  mx-rollup maybe\n}\n",
	    "t.conf:2: mx-rollup: \"maybe\": expected yes or no");
	expect_err("listener 127.0.0.1:25 {\n  smtputf8 2\n}\n",
	    "t.conf:2: smtputf8: \"2\": expected yes or no");
	expect_err("domain * {\n  tls sometimes\n}\n",
	    "t.conf:2: tls: expected one of none|opportunistic|required|verify, not \"sometimes\"");
	expect_err("domain * {\n  tls Required\n}\n",
	    "t.conf:2: tls: expected one of none|opportunistic|required|verify, not \"Required\"");
	expect_err("listener 127.0.0.1:25 {\n  auth maybe\n}\n",
	    "t.conf:2: auth: expected one of none|optional|required, not \"maybe\"");
	expect_err("log-level loud\n",
	    "t.conf:1: log-level: expected one of error|warn|info|debug|trace, not \"loud\"");
	expect_err("domain * {\n  max-smtp-out many\n}\n",
	    "t.conf:2: max-smtp-out: \"many\": expected a non-negative integer");
	expect_err("domain * {\n  max-smtp-out -1\n}\n",
	    "t.conf:2: max-smtp-out: \"-1\": expected a non-negative integer");
	expect_err("workers lots\n", "t.conf:1: workers: \"lots\": expected auto or a number of threads");
	expect_err("resolver [::1\n", "t.conf:1: resolver: \"[::1\": missing ']' in [host]:port");
	expect_err("resolver 127.0.0.1:0\n", "t.conf:1: resolver: \"127.0.0.1:0\": port must be 1-65535");
	expect_err("domain * {\n  retry-after 5m,soon\n}\n",
	    "t.conf:2: retry-after: \"soon\": expected a duration like 500ms, 30s, 10m, 4h or 2d");
	expect_err("domain * {\n  retry-after 5m,0s\n}\n",
	    "t.conf:2: retry-after: \"0s\": must be positive");
	expect_err("domain * {\n  retry-after ,,\n}\n",
	    "t.conf:2: retry-after: expected a list like 5m,15m,1h");
	{
		char text[512], *p = text;
		p += sprintf(p, "domain * {\n  retry-after ");
		for (int i = 1; i <= MAX_RETRY_STEPS + 1; i++)
			p += sprintf(p, "%s%dm", i > 1 ? "," : "", i);
		sprintf(p, "\n}\n");
		expect_err(text, "t.conf:2: retry-after: at most 32 steps");
	}
	expect_err("listener 127.0.0.1:25 {\n  relay-from 10.0.0.0/33\n}\n",
	    "t.conf:2: relay-from: \"10.0.0.0/33\": bad prefix length");
	expect_err("listener 127.0.0.1:25 {\n  relay-from 127.0.0.1,nonsense,::1/200\n}\n",
	    "t.conf:2: relay-from: \"nonsense\": expected an address or network like 127.0.0.0/8 or ::1/128\n"
	    "t.conf:2: relay-from: \"::1/200\": bad prefix length");
	expect_err("domain a.test {\n  route mx.a.test:0\n}\n",
	    "t.conf:2: route: \"mx.a.test:0\": port must be 1-65535");
	expect_err("dkim a.test {\n  selector s1 dsa /k\n}\n",
	    "t.conf:2: selector: algorithm must be rsa or ed25519, not \"dsa\"\n"
	    "t.conf:1: dkim a.test has no selector");
}

static void
test_err_ranges(void **state)
{
	(void)state;
	expect_err("domain * {\n  max-smtp-out 0\n}\n",
	    "t.conf:2: max-smtp-out: 0 is out of range (1-10000)");
	expect_err("domain gmail.com { max-smtp-out 10001 }\n",
	    "t.conf:1: max-smtp-out: 10001 is out of range (1-10000)");
	expect_err("domain * {\n  max-smtp-out 9223372036854775808\n}\n",
	    "t.conf:2: max-smtp-out: 9223372036854775808 is out of range (1-10000)");
	expect_err("workers 999\n", "t.conf:1: workers: 999 is out of range (1-64)");
	expect_err("workers 0\n", "t.conf:1: workers: 0 is out of range (1-64)");
	expect_err("spool-threads 65\n", "t.conf:1: spool-threads: 65 is out of range (1-64)");
	expect_err("smtp-port 0\n", "t.conf:1: smtp-port: 0 is out of range (1-65535)");
	expect_err("domain * {\n  smtp-port 65536\n}\n",
	    "t.conf:2: smtp-port: 65536 is out of range (0-65535)");
	expect_err("listener 127.0.0.1:25 {\n  max-line-length 511\n}\n",
	    "t.conf:2: max-line-length: 511 is out of range (512-1048576)");
	expect_err("listener 127.0.0.1:25 {\n  max-message-size 1023\n}\n",
	    "t.conf:2: max-message-size: 1023 is out of range");
	expect_err("domain * {\n  bounce-after 999ms\n}\n",
	    "t.conf:2: bounce-after: 999ms is too short (at least 1s)");
	expect_err("domain * {\n  connect-timeout 99ms\n}\n",
	    "t.conf:2: connect-timeout: 99ms is too short (at least 100ms)");
	expect_err("listener 127.0.0.1:25 {\n  command-timeout 0\n}\n",
	    "t.conf:2: command-timeout: 0 is too short (at least 1s)");
	expect_err("dkim a.test {\n  signature-expiry 30s\n}\n",
	    "t.conf:2: signature-expiry: 30s is too short (at least 1m)\n"
	    "t.conf:1: dkim a.test has no selector");
}

static void
test_err_duplicates(void **state)
{
	(void)state;
	expect_err("listener 127.0.0.1:25 {\n}\nlistener 127.0.0.1:25 {\n  max-errors 0\n}\n",
	    "t.conf:3: listener 127.0.0.1:25 is defined twice (first at t.conf:1)");
	expect_err("source s { }\nsource s {\n}\n",
	    "t.conf:2: source s is defined twice (first at t.conf:1)");
	expect_err("source s { }\npool p { source s }\n\npool P { source s }\n",
	    "t.conf:4: pool P is defined twice (first at t.conf:2)");
	expect_err("domain * { tls none }\ndomain * { tls none }\n",
	    "t.conf:2: domain * is defined twice (first at t.conf:1)");
	expect_err("domain gmail.com { }\ndomain GMail.com {\n  max-smtp-out 0\n}\n",
	    "t.conf:2: domain GMail.com is defined twice (first at t.conf:1)");
	expect_err("provider gmail { mx *.google.com }\nprovider gmail { mx *.google.com }\n",
	    "t.conf:2: provider gmail is defined twice (first at t.conf:1)");
	expect_err("dkim a.test {\n}\ndkim A.test {\n}\n",
	    "t.conf:3: dkim A.test is defined twice (first at t.conf:1)\n"
	    "t.conf:1: dkim a.test has no selector");
	/* the same directive twice in one block, or at the top level */
	expect_err("domain a.test {\n  max-smtp-out 1\n  max-smtp-out 2\n}\n",
	    "t.conf:3: max-smtp-out is given twice in a domain block");
	expect_err("domain a.test { tls none tls none }\n",
	    "t.conf:1: tls is given twice in a domain block");
	expect_err("domain a.test {\n  route a:25\n  route b:25\n}\n",
	    "t.conf:3: route is given twice in a domain block");
	expect_err("provider p {\n  mx m\n  tls none\n  tls verify\n}\n",
	    "t.conf:4: tls is given twice in a provider block");
	expect_err("listener 127.0.0.1:25 {\n  auth none\n  auth none\n}\n",
	    "t.conf:3: auth is given twice in a listener block");
	expect_err("source s {\n  ehlo a\n  ehlo b\n}\n",
	    "t.conf:3: ehlo is given twice in a source block");
	expect_err("workers 2\nhostname h\nworkers 3\n",
	    "t.conf:3: workers is given twice in the config");
	/* a top-level directive between blocks is still a duplicate */
	expect_err("hostname a\ndomain * { }\nhostname b\n",
	    "t.conf:3: hostname is given twice in the config");
}

static void
test_err_structure(void **state)
{
	(void)state;
	expect_err("domain a.test {\n  max-smtp-out 1\n", "t.conf:1: domain block is not closed with '}'");
	expect_err("hostname h\nlistener 127.0.0.1:25 {", "t.conf:2: listener block is not closed with '}'");
	expect_err("}\n", "t.conf:1: unexpected '}'");
	expect_err("domain a.test { }\n}\n", "t.conf:2: unexpected '}'");
	expect_err("hostname \"abc\n",
	    "t.conf:1: unterminated quoted string\n"
	    "t.conf:1: hostname: expected NAME");
	expect_err("hostname \"abc\\\"\n",
	    "t.conf:1: unterminated quoted string\n"
	    "t.conf:1: hostname: expected NAME");
	expect_err("hostname h\nbounce-from \"a@b", "t.conf:2: unterminated quoted string\n"
	    "t.conf:2: bounce-from: expected ADDRESS");
}

static void
test_err_validation(void **state)
{
	char text[2048], want[2048];

	(void)state;
	expect_err("pool p {\n  source nosuch\n}\n", "t.conf:2: pool p: unknown source \"nosuch\"");
	expect_err("source a { }\npool p {\n  source a\n  source b weight 2\n}\n",
	    "t.conf:4: pool p: unknown source \"b\"");
	expect_err("pool p {\n}\n", "t.conf:1: pool p has no source");
	expect_err("pool p { sender-domain a.test }\n", "t.conf:1: pool p has no source");
	expect_err("provider gmail {\n  max-smtp-out 5\n}\n", "t.conf:1: provider gmail has no mx patterns");
	expect_err("dkim a.test {\n}\n", "t.conf:1: dkim a.test has no selector");
	expect_err("source s { }\n\npool p {\n  source s\n  dkim-domain esp.test\n}\n",
	    "t.conf:3: pool p: dkim-domain esp.test has no dkim block");

	snprintf(text, sizeof(text), "listener 127.0.0.1:25 {\n  tls-certificate %s\n}\n", cert);
	expect_err(text, "t.conf:1: listener 127.0.0.1:25: tls-certificate and tls-key go together");
	snprintf(text, sizeof(text), "\nlistener 127.0.0.1:25 {\n  tls-key %s\n}\n", key);
	expect_err(text, "t.conf:2: listener 127.0.0.1:25: tls-certificate and tls-key go together");
	snprintf(text, sizeof(text),
	    "listener 127.0.0.1:25 {\n  tls-certificate %s\n  tls-key %s\n  auth required\n}\n", cert, key);
	expect_err(text, "t.conf:1: listener 127.0.0.1:25: auth needs auth-users");
	snprintf(text, sizeof(text), "listener 127.0.0.1:25 {\n  auth optional\n  auth-users %s\n}\n", users);
	expect_err(text, "t.conf:1: listener 127.0.0.1:25: auth is only offered over TLS; add tls-certificate and tls-key");
	expect_err("listener 127.0.0.1:25 {\n  auth required\n}\n",
	    "t.conf:1: listener 127.0.0.1:25: auth needs auth-users\n"
	    "t.conf:1: listener 127.0.0.1:25: auth is only offered over TLS; add tls-certificate and tls-key");
	snprintf(text, sizeof(text),
	    "listener 127.0.0.1:25 {\n  tls-certificate %s/no-cert.pem\n  tls-key %s/no-key.pem\n}\n", tmpdir, tmpdir);
	snprintf(want, sizeof(want),
	    "t.conf:1: listener 127.0.0.1:25: cannot read tls-certificate %s/no-cert.pem: %s\n"
	    "t.conf:1: listener 127.0.0.1:25: cannot read tls-key %s/no-key.pem: %s",
	    tmpdir, strerror(ENOENT), tmpdir, strerror(ENOENT));
	expect_err(text, want);
	snprintf(text, sizeof(text),
	    "listener 127.0.0.1:25 {\n  tls-certificate %s\n  tls-key %s\n  auth optional\n  auth-users %s/nousers\n}\n",
	    cert, key, tmpdir);
	snprintf(want, sizeof(want), "t.conf:1: listener 127.0.0.1:25: cannot read auth-users %s/nousers: %s",
	    tmpdir, strerror(ENOENT));
	expect_err(text, want);

	snprintf(text, sizeof(text), "domain a.test {\n  route-auth u %s\n}\n", pwfile);
	expect_err(text, "t.conf:1: domain a.test: route-auth needs a route");
	snprintf(text, sizeof(text), "domain * {\n  route-auth u %s\n}\n", pwfile);
	expect_err(text, "t.conf:1: domain *: route-auth needs a route");
	snprintf(text, sizeof(text), "domain a.test {\n  route h:25\n  route-auth u %s/nopw\n}\n", tmpdir);
	snprintf(want, sizeof(want), "t.conf:3: route-auth: cannot read password file %s/nopw: %s",
	    tmpdir, strerror(ENOENT));
	expect_err(text, want);
}

static void
test_err_many(void **state)
{
	char small[40];
	struct config *c;
	const char *text =
	    "hostname a\n"                            /* 1 */
	    "bogus 1\n"                               /* 2 */
	    "workers 999\n"                           /* 3 */
	    "domain * {\n"                            /* 4 */
	    "  max-smtp-out 0\n"                      /* 5 */
	    "  tls maybe\n"                           /* 6 */
	    "  max-msg-rate 5\n"                      /* 7 */
	    "}\n"                                     /* 8 */
	    "pool p {\n"                              /* 9 */
	    "  source ghost\n"                        /* 10 */
	    "}\n"                                     /* 11 */
	    "provider x {\n"                          /* 12 */
	    "}\n"                                     /* 13 */
	    "hostname b\n"                            /* 14 */
	    "}\n";                                    /* 15 */

	(void)state;
	expect_err(text,
	    "t.conf:2: unknown directive \"bogus\"\n"
	    "t.conf:3: workers: 999 is out of range (1-64)\n"
	    "t.conf:5: max-smtp-out: 0 is out of range (1-10000)\n"
	    "t.conf:6: tls: expected one of none|opportunistic|required|verify, not \"maybe\"\n"
	    "t.conf:7: max-msg-rate: \"5\": expected a rate like 3600/h, 20/m, 5/s or 100/10m\n"
	    "t.conf:14: hostname is given twice in the config\n"
	    "t.conf:15: unexpected '}'\n"
	    "t.conf:10: pool p: unknown source \"ghost\"\n"
	    "t.conf:12: provider x has no mx patterns");

	/* a short error buffer is filled and terminated, never overrun */
	memset(small, '#', sizeof(small));
	c = conf_load_string(text, "t.conf", small, 32);
	assert_null(c);
	assert_int_equal(strlen(small), 31);
	assert_memory_equal(small, "t.conf:2: unknown directive \"bo", 31);
	assert_int_equal(small[32], '#');
	/* no error buffer at all */
	assert_null(conf_load_string(text, "t.conf", NULL, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_limits_merge),
		cmocka_unit_test(test_limits_without_star_block),
		cmocka_unit_test(test_retry_delay),
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_syntax_details),
		cmocka_unit_test(test_builtin_default),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_err_unknown_and_misplaced),
		cmocka_unit_test(test_err_arguments),
		cmocka_unit_test(test_err_types),
		cmocka_unit_test(test_err_ranges),
		cmocka_unit_test(test_err_duplicates),
		cmocka_unit_test(test_err_structure),
		cmocka_unit_test(test_err_validation),
		cmocka_unit_test(test_err_many),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
