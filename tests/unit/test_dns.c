/*
 * dns.c against a small authoritative DNS server written here, on a UDP
 * socket on 127.0.0.1 (port chosen by the kernel) served from the same
 * event_base as the resolver: no subprocess to leak, no port to guess.
 * The server answers from a table of records, can be told to SERVFAIL,
 * REFUSE, NXDOMAIN or ignore a name, and logs every query it sees, so the
 * tests can count queries (cache hits and merged lookups make none).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"

#define T_A_ 1
#define T_MX_ 15
#define T_TXT_ 16
#define T_AAAA_ 28
#define T_SOA_ 6

enum mode { M_NORMAL, M_SERVFAIL, M_REFUSED, M_NXDOMAIN, M_TIMEOUT };

struct rr {
	char name[256];
	int type;
	uint32_t ttl;
	uint16_t pref;
	char target[256];              /* MX target, TXT text */
	uint8_t addr[16];
};

struct fake {
	int fd;
	uint16_t port;
	struct event *ev;
	struct rr rrs[64];
	int nrr;
	struct { char name[256]; enum mode mode; } beh[16];
	int nbeh;
	struct { char name[256]; int type; } log[512];
	int nlog;
	uint32_t soa_min;
};

static struct fake F;
static struct event_base *base;
static struct dns *dns;
static int64_t clock_offset;

static int64_t
test_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset;
}

static int64_t
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server ---- */

static void
add_rr(const char *name, int type, uint32_t ttl, uint16_t pref, const char *target)
{
	struct rr *r = &F.rrs[F.nrr++];

	snprintf(r->name, sizeof(r->name), "%s", name);
	r->type = type;
	r->ttl = ttl;
	r->pref = pref;
	if (type == T_A_)
		inet_pton(AF_INET, target, r->addr);
	else if (type == T_AAAA_)
		inet_pton(AF_INET6, target, r->addr);
	else
		snprintf(r->target, sizeof(r->target), "%s", target);
}

static void
set_mode(const char *name, enum mode m)
{
	snprintf(F.beh[F.nbeh].name, sizeof(F.beh[0].name), "%s", name);
	F.beh[F.nbeh++].mode = m;
}

static int
count_queries(const char *name, int type)
{
	int n = 0;

	for (int i = 0; i < F.nlog; i++)
		if (strcasecmp(F.log[i].name, name) == 0 && (type == 0 || F.log[i].type == type))
			n++;
	return n;
}

static size_t
put_name(uint8_t *p, const char *name)
{
	size_t n = 0;
	const char *s = name;

	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);

		p[n++] = (uint8_t)l;
		memcpy(p + n, s, l);
		n += l;
		s += l;
		if (*s == '.')
			s++;
	}
	p[n++] = 0;
	return n;
}

static size_t
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static size_t
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return 4;
}

/* RR header pointing at the question name (offset 12). */
static size_t
put_rr_head(uint8_t *p, int type, uint32_t ttl)
{
	size_t n = 0;

	n += put16(p + n, 0xc00c);
	n += put16(p + n, (unsigned)type);
	n += put16(p + n, 1);
	n += put32(p + n, ttl);
	return n;
}

static void
serve_cb(evutil_socket_t fd, short what, void *arg)
{
	uint8_t q[512], out[1500];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
	char name[256] = "";
	size_t i = 12, nl = 0, n;
	int qtype, rcode = 0, an = 0, ns = 0;
	enum mode mode = M_NORMAL;
	bool exists = false;

	if (len < 17)
		return;
	while (i < (size_t)len && q[i]) {
		size_t l = q[i++];
		if (nl)
			name[nl++] = '.';
		memcpy(name + nl, q + i, l);
		nl += l;
		i += l;
	}
	name[nl] = '\0';
	i++;
	qtype = q[i] << 8 | q[i + 1];
	i += 4;                 /* end of the question */
	if (F.nlog < (int)(sizeof(F.log) / sizeof(F.log[0]))) {
		snprintf(F.log[F.nlog].name, sizeof(F.log[0].name), "%s", name);
		F.log[F.nlog++].type = qtype;
	}
	for (int k = 0; k < F.nbeh; k++)
		if (strcasecmp(F.beh[k].name, name) == 0)
			mode = F.beh[k].mode;
	if (mode == M_TIMEOUT)
		return;

	memcpy(out, q, i);
	n = i;
	if (mode == M_SERVFAIL)
		rcode = 2;
	else if (mode == M_REFUSED)
		rcode = 5;
	else if (mode == M_NXDOMAIN)
		rcode = 3;
	else {
		for (int k = 0; k < F.nrr; k++) {
			struct rr *r = &F.rrs[k];
			uint8_t *rd;

			if (strcasecmp(r->name, name) != 0)
				continue;
			exists = true;
			if (r->type != qtype)
				continue;
			n += put_rr_head(out + n, r->type, r->ttl);
			rd = out + n + 2;
			switch (r->type) {
			case T_A_:
				memcpy(rd, r->addr, 4);
				n += put16(out + n, 4) + 4;
				break;
			case T_AAAA_:
				memcpy(rd, r->addr, 16);
				n += put16(out + n, 16) + 16;
				break;
			case T_MX_: {
				size_t l = put16(rd, r->pref);
				l += strcmp(r->target, ".") == 0 ? (rd[l] = 0, 1) : put_name(rd + l, r->target);
				n += put16(out + n, (unsigned)l) + l;
				break;
			}
			case T_TXT_: {
				size_t l = strlen(r->target);
				rd[0] = (uint8_t)l;
				memcpy(rd + 1, r->target, l);
				n += put16(out + n, (unsigned)l + 1) + l + 1;
				break;
			}
			}
			an++;
		}
		if (!exists)
			rcode = 3;
	}
	if (rcode == 3 || (rcode == 0 && an == 0)) {
		/* SOA for negative caching */
		uint8_t *rd;
		size_t l;

		n += put_rr_head(out + n, T_SOA_, 300);
		rd = out + n + 2;
		l = put_name(rd, "ns.test");
		l += put_name(rd + l, "hostmaster.test");
		l += put32(rd + l, 1);
		l += put32(rd + l, 3600);
		l += put32(rd + l, 600);
		l += put32(rd + l, 86400);
		l += put32(rd + l, F.soa_min);
		n += put16(out + n, (unsigned)l) + l;
		ns = 1;
	}
	out[2] = 0x84 | (q[2] & 0x01);          /* QR, AA, RD copied */
	out[3] = (uint8_t)(0x80 | rcode);      /* RA */
	put16(out + 4, 1);
	put16(out + 6, (unsigned)an);
	put16(out + 8, (unsigned)ns);
	put16(out + 10, 0);
	sendto(fd, out, n, 0, (struct sockaddr *)&from, fromlen);
}

static void
server_start(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	memset(&F, 0, sizeof(F));
	F.soa_min = 30;
	F.fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(F.fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(F.fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(F.fd, (struct sockaddr *)&sin, &sl), 0);
	F.port = ntohs(sin.sin_port);
	evutil_make_socket_nonblocking(F.fd);
	F.ev = event_new(base, F.fd, EV_READ | EV_PERSIST, serve_cb, NULL);
	event_add(F.ev, NULL);
}

static int
setup(void **state)
{
	char servers[64];

	base = event_base_new();
	assert_non_null(base);
	server_start();
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", F.port);
	/* short timeouts: the timeout test waits for them */
	dns = dns_new_servers(base, servers, 300, 2);
	assert_non_null(dns);
	clock_offset = 0;
	dns_set_clock(dns, test_clock);
	return 0;
}

static int
teardown(void **state)
{
	dns_free(dns);
	event_free(F.ev);
	close(F.fd);
	event_base_free(base);
	return 0;
}

/* ---- callbacks and the loop ---- */

struct got {
	int calls;
	struct dns_result res;
};

static void
got_cb(const struct dns_result *res, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->res = *res;
}

static void
run_until(int *counter, int want)
{
	int64_t deadline = mono() + 5000;

	while (*counter < want && mono() < deadline)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
	assert_true(*counter >= want);
}

static struct got *
resolve(const char *domain)
{
	static struct got g;

	memset(&g, 0, sizeof(g));
	dns_resolve_mx(dns, domain, got_cb, &g);
	run_until(&g.calls, 1);
	assert_int_equal(g.calls, 1);
	return &g;
}

static const char *
addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)len);
	return buf;
}

/* ---- tests ---- */

static void
test_mx_order_and_shuffle(void **state)
{
	int first_seen[3] = { 0, 0, 0 };
	const char *mid[3] = { "a.mx.test", "b.mx.test", "c.mx.test" };
	char buf[64];

	add_rr("order.test", T_MX_, 300, 20, "last.mx.test");
	add_rr("order.test", T_MX_, 300, 10, "a.mx.test");
	add_rr("order.test", T_MX_, 300, 5, "first.mx.test");
	add_rr("order.test", T_MX_, 300, 10, "b.mx.test");
	add_rr("order.test", T_MX_, 300, 10, "C.MX.TEST.");
	add_rr("first.mx.test", T_A_, 300, 0, "127.0.0.11");
	add_rr("a.mx.test", T_A_, 300, 0, "127.0.0.12");
	add_rr("a.mx.test", T_AAAA_, 300, 0, "::1");
	add_rr("b.mx.test", T_A_, 300, 0, "127.0.0.13");
	add_rr("c.mx.test", T_A_, 300, 0, "127.0.0.14");
	add_rr("last.mx.test", T_A_, 300, 0, "127.0.0.15");

	for (int round = 0; round < 60; round++) {
		struct got *g = resolve("Order.Test.");

		assert_int_equal(g->res.status, DNS_OK);
		assert_int_equal(g->res.implicit_mx, 0);
		assert_int_equal(g->res.nhosts, 5);
		assert_string_equal(g->res.hosts[0].name, "first.mx.test");
		assert_int_equal(g->res.hosts[0].pref, 5);
		assert_string_equal(addr_str(&g->res.hosts[0].addrs[0], buf, sizeof(buf)), "127.0.0.11");
		assert_string_equal(g->res.hosts[4].name, "last.mx.test");
		for (int i = 1; i < 4; i++)
			assert_int_equal(g->res.hosts[i].pref, 10);
		for (int k = 0; k < 3; k++) {
			int seen = 0;
			for (int i = 1; i < 4; i++)
				if (strcmp(g->res.hosts[i].name, mid[k]) == 0)
					seen++;
			assert_int_equal(seen, 1);
			if (strcmp(g->res.hosts[1].name, mid[k]) == 0)
				first_seen[k]++;
			if (strcmp(g->res.hosts[1].name, "a.mx.test") == 0 ||
			    strcmp(g->res.hosts[2].name, "a.mx.test") == 0 ||
			    strcmp(g->res.hosts[3].name, "a.mx.test") == 0) {
				/* a.mx.test has A and AAAA: IPv4 first */
				for (int i = 1; i < 4; i++)
					if (strcmp(g->res.hosts[i].name, "a.mx.test") == 0) {
						assert_int_equal(g->res.hosts[i].naddrs, 2);
						assert_int_equal(g->res.hosts[i].addrs[0].ss_family, AF_INET);
						assert_int_equal(g->res.hosts[i].addrs[1].ss_family, AF_INET6);
					}
			}
		}
	}
	/* equal preferences are shuffled: each of the three came first sometimes */
	for (int k = 0; k < 3; k++)
		assert_true(first_seen[k] > 0);
	/* one MX query in all: the other 59 were cache hits */
	assert_int_equal(count_queries("order.test", T_MX_), 1);
}

static void
test_implicit_mx(void **state)
{
	struct got *g;
	char buf[64];

	add_rr("implicit.test", T_A_, 300, 0, "127.0.0.9");
	g = resolve("implicit.test");
	assert_int_equal(g->res.status, DNS_OK);
	assert_int_equal(g->res.implicit_mx, 1);
	assert_int_equal(g->res.nhosts, 1);
	assert_string_equal(g->res.hosts[0].name, "implicit.test");
	assert_int_equal(g->res.hosts[0].naddrs, 1);
	assert_string_equal(addr_str(&g->res.hosts[0].addrs[0], buf, sizeof(buf)), "127.0.0.9");
}

static void
test_null_mx(void **state)
{
	struct got *g;

	add_rr("nullmx.test", T_MX_, 300, 0, ".");
	add_rr("nullmx.test", T_A_, 300, 0, "127.0.0.9");
	g = resolve("nullmx.test");
	assert_int_equal(g->res.status, DNS_NULLMX);
	assert_int_equal(g->res.nhosts, 0);
}

static void
test_nxdomain_negative_cache(void **state)
{
	struct got *g;
	int before;

	g = resolve("nope.test");
	assert_int_equal(g->res.status, DNS_NXDOMAIN);
	assert_true(g->res.errmsg[0] != '\0');
	before = F.nlog;
	g = resolve("nope.test");
	assert_int_equal(g->res.status, DNS_NXDOMAIN);
	assert_int_equal(F.nlog, before);            /* negative cache */
	/* SOA minimum is 30 s here: 31 s later it is asked again */
	clock_offset = 31 * 1000;
	g = resolve("nope.test");
	assert_int_equal(g->res.status, DNS_NXDOMAIN);
	assert_int_equal(F.nlog, before + 1);
}

static void
test_nohost(void **state)
{
	struct got *g;

	/* the name exists (it has a TXT record) but no MX and no address */
	add_rr("bare.test", T_TXT_, 300, 0, "v=spf1 -all");
	g = resolve("bare.test");
	assert_int_equal(g->res.status, DNS_NOHOST);
}

static void
test_servfail_refused(void **state)
{
	struct got *g;
	int before;

	set_mode("broken.test", M_SERVFAIL);
	g = resolve("broken.test");
	assert_int_equal(g->res.status, DNS_TEMPFAIL);
	/* temporary failures are not cached */
	before = count_queries("broken.test", T_MX_);
	g = resolve("broken.test");
	assert_int_equal(g->res.status, DNS_TEMPFAIL);
	assert_true(count_queries("broken.test", T_MX_) > before);

	set_mode("refusing.test", M_REFUSED);
	g = resolve("refusing.test");
	assert_int_equal(g->res.status, DNS_TEMPFAIL);
}

static void
test_timeout(void **state)
{
	struct got *g;
	int64_t t0 = mono();

	set_mode("silent.test", M_TIMEOUT);
	g = resolve("silent.test");
	assert_int_equal(g->res.status, DNS_TEMPFAIL);
	assert_true(count_queries("silent.test", T_MX_) >= 2);      /* 2 tries */
	assert_true(mono() - t0 >= 300);
}

static void
test_cache_hit_and_ttl_expiry(void **state)
{
	struct got *g;
	int mxq, aq;

	add_rr("ttl.test", T_MX_, 100, 10, "mx.ttl.test");
	add_rr("mx.ttl.test", T_A_, 60, 0, "127.0.0.20");
	g = resolve("ttl.test");
	assert_int_equal(g->res.status, DNS_OK);
	/* expires with the smallest TTL used: the A record's 60 s */
	assert_true(g->res.expires_ms <= test_clock() + 60 * 1000);
	assert_true(g->res.expires_ms > test_clock() + 50 * 1000);
	mxq = count_queries("ttl.test", T_MX_);
	aq = count_queries("mx.ttl.test", T_A_);
	assert_int_equal(mxq, 1);
	assert_int_equal(aq, 1);

	/* a hit answers before dns_resolve_mx returns and asks nothing */
	{
		struct got h = { 0 };
		dns_resolve_mx(dns, "ttl.test", got_cb, &h);
		assert_int_equal(h.calls, 1);
		assert_int_equal(h.res.status, DNS_OK);
	}
	clock_offset = 59 * 1000;
	g = resolve("ttl.test");
	assert_int_equal(count_queries("ttl.test", T_MX_), 1);

	/* past 60 s: MX asked again, and the MX host's address too */
	clock_offset = 61 * 1000;
	g = resolve("ttl.test");
	assert_int_equal(g->res.status, DNS_OK);
	assert_int_equal(count_queries("ttl.test", T_MX_), 2);
	assert_int_equal(count_queries("mx.ttl.test", T_A_), 2);
}

static void
test_ttl_floor(void **state)
{
	struct got *g;

	add_rr("zero.test", T_MX_, 0, 10, "mx.zero.test");
	add_rr("mx.zero.test", T_A_, 0, 0, "127.0.0.21");
	g = resolve("zero.test");
	assert_int_equal(g->res.status, DNS_OK);
	/* TTL 0 is held for the 5 s floor */
	assert_true(g->res.expires_ms >= test_clock() + 4000);
	g = resolve("zero.test");
	assert_int_equal(count_queries("zero.test", T_MX_), 1);
}

static void
test_merged_lookups(void **state)
{
	struct got g[4];

	add_rr("merge.test", T_MX_, 300, 10, "mx.merge.test");
	add_rr("mx.merge.test", T_A_, 300, 0, "127.0.0.30");
	add_rr("other.test", T_MX_, 300, 10, "mx.merge.test");
	memset(g, 0, sizeof(g));
	for (int i = 0; i < 3; i++)
		dns_resolve_mx(dns, "merge.test", got_cb, &g[i]);
	/* a second domain with the same MX host shares its address lookup */
	dns_resolve_mx(dns, "other.test", got_cb, &g[3]);
	for (int i = 0; i < 4; i++)
		assert_int_equal(g[i].calls, 0);
	for (int i = 0; i < 4; i++)
		run_until(&g[i].calls, 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].res.status, DNS_OK);
		assert_string_equal(g[i].res.hosts[0].name, "mx.merge.test");
	}
	assert_int_equal(count_queries("merge.test", T_MX_), 1);
	assert_int_equal(count_queries("mx.merge.test", T_A_), 1);
	assert_int_equal(count_queries("mx.merge.test", T_AAAA_), 1);
}

static void
test_mx_without_address_skipped(void **state)
{
	struct got *g;

	add_rr("skip.test", T_MX_, 300, 10, "gone.skip.test");
	add_rr("skip.test", T_MX_, 300, 20, "mx2.skip.test");
	add_rr("mx2.skip.test", T_A_, 300, 0, "127.0.0.31");
	g = resolve("skip.test");
	assert_int_equal(g->res.status, DNS_OK);
	assert_int_equal(g->res.nhosts, 1);
	assert_string_equal(g->res.hosts[0].name, "mx2.skip.test");
	assert_int_equal(g->res.hosts[0].pref, 20);

	/* every MX failing temporarily: TEMPFAIL, not NOHOST */
	add_rr("tmp.test", T_MX_, 300, 10, "mx1.tmp.test");
	add_rr("tmp.test", T_MX_, 300, 20, "mx2.tmp.test");
	set_mode("mx1.tmp.test", M_SERVFAIL);
	set_mode("mx2.tmp.test", M_SERVFAIL);
	g = resolve("tmp.test");
	assert_int_equal(g->res.status, DNS_TEMPFAIL);

	/* every MX without an address: NOHOST */
	add_rr("dead.test", T_MX_, 300, 10, "gone1.dead.test");
	g = resolve("dead.test");
	assert_int_equal(g->res.status, DNS_NOHOST);
}

static void
test_resolve_host(void **state)
{
	struct got g = { 0 };
	char buf[64];
	int before = F.nlog;

	/* literals answer at once, without a query */
	dns_resolve_host(dns, "[127.0.0.1]", got_cb, &g);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.res.status, DNS_OK);
	assert_string_equal(addr_str(&g.res.hosts[0].addrs[0], buf, sizeof(buf)), "127.0.0.1");
	dns_resolve_host(dns, "::1", got_cb, &g);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.res.hosts[0].addrs[0].ss_family, AF_INET6);
	/* address-literal recipient domains deliver to the literal */
	dns_resolve_mx(dns, "[127.0.0.5]", got_cb, &g);
	assert_int_equal(g.calls, 3);
	assert_string_equal(addr_str(&g.res.hosts[0].addrs[0], buf, sizeof(buf)), "127.0.0.5");
	assert_int_equal(F.nlog, before);

	add_rr("smart.test", T_A_, 300, 0, "127.0.0.40");
	memset(&g, 0, sizeof(g));
	dns_resolve_host(dns, "smart.test", got_cb, &g);
	run_until(&g.calls, 1);
	assert_int_equal(g.res.status, DNS_OK);
	assert_int_equal(g.res.nhosts, 1);
	assert_int_equal(g.res.hosts[0].pref, 0);
	assert_string_equal(addr_str(&g.res.hosts[0].addrs[0], buf, sizeof(buf)), "127.0.0.40");

	memset(&g, 0, sizeof(g));
	dns_resolve_host(dns, "missing.test", got_cb, &g);
	run_until(&g.calls, 1);
	assert_int_equal(g.res.status, DNS_NXDOMAIN);
}

struct gottxt { int calls, status; char txt[256]; };

static void
txt_cb(int status, const char *txt, void *arg)
{
	struct gottxt *g = arg;

	g->calls++;
	g->status = status;
	snprintf(g->txt, sizeof(g->txt), "%s", txt ? txt : "(null)");
}

static void
test_txt(void **state)
{
	struct gottxt g = { 0 };

	add_rr("s1._domainkey.txt.test", T_TXT_, 300, 0, "v=DKIM1; k=rsa; p=AAAA");
	dns_lookup_txt(dns, "s1._domainkey.txt.test", txt_cb, &g);
	run_until(&g.calls, 1);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.txt, "v=DKIM1; k=rsa; p=AAAA");

	memset(&g, 0, sizeof(g));
	dns_lookup_txt(dns, "nothing.txt.test", txt_cb, &g);
	run_until(&g.calls, 1);
	assert_int_equal(g.status, DNS_NXDOMAIN);
	assert_string_equal(g.txt, "(null)");
}

static void
test_flush(void **state)
{
	struct got *g;

	add_rr("flush.test", T_A_, 300, 0, "127.0.0.50");
	g = resolve("flush.test");
	assert_int_equal(g->res.status, DNS_OK);
	dns_flush(dns);
	g = resolve("flush.test");
	assert_int_equal(count_queries("flush.test", T_MX_), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mx_order_and_shuffle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implicit_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nxdomain_negative_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nohost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servfail_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_hit_and_ttl_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merged_lookups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mx_without_address_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
