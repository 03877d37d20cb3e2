/*
 * util.c value parsers (sizes, durations, rates, host:port, CIDR), the
 * glob and id helpers, and the JSON line builder of log.c. Every case
 * compares exact values and exact error texts; JSON output is compared
 * byte for byte and also handed to jansson to prove it parses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "util.h"

#define SIZE_ERR "expected a size like 512, 64K, 50M or 1G"
#define DUR_ERR "expected a duration like 500ms, 30s, 10m, 4h or 2d"
#define RATE_ERR "expected a rate like 3600/h, 20/m, 5/s or 100/10m"
#define CIDR_ERR "expected an address or network like 127.0.0.0/8 or ::1/128"

/* ---- sizes ---- */

static void
size_ok(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	const char *err = NULL;

	assert_int_equal(parse_size(s, &v, &err), 0);
	assert_true(v == want);
	assert_null(err);
}

static void
size_bad(const char *s, const char *want_err)
{
	uint64_t v = 12345;
	const char *err = NULL;

	assert_int_equal(parse_size(s, &v, &err), -1);
	assert_non_null(err);
	assert_string_equal(err, want_err);
	assert_true(v == 12345);        /* untouched on error */
}

static void
test_parse_size(void **state)
{
	(void)state;
	size_ok("0", 0);
	size_ok("512", 512);
	size_ok("64K", 64 * 1024);
	size_ok("64k", 64 * 1024);
	size_ok("50M", 50ULL * 1024 * 1024);
	size_ok("1G", 1024ULL * 1024 * 1024);
	size_ok("10MB", 10ULL * 1024 * 1024);
	size_ok("10mb", 10ULL * 1024 * 1024);
	size_ok("1KB", 1024);
	size_ok("2GB", 2ULL * 1024 * 1024 * 1024);
	/* the largest multiple of 1G that fits: 2^64 - 2^30 */
	size_ok("17179869183G", UINT64_MAX - (1024ULL * 1024 * 1024 - 1));
	size_ok("18446744073709551609", 18446744073709551609ULL);

	size_bad("10X", "unknown size unit (use K, M or G)");
	size_bad("10T", "unknown size unit (use K, M or G)");
	size_bad("10 M", "unknown size unit (use K, M or G)");
	size_bad("", SIZE_ERR);
	size_bad("M", SIZE_ERR);
	size_bad("-1", SIZE_ERR);
	size_bad(" 1", SIZE_ERR);
	size_bad("1.5M", "unknown size unit (use K, M or G)");
	size_bad("10MBx", SIZE_ERR);
	size_bad("10B", "unknown size unit (use K, M or G)");  /* B only after a unit */
	size_bad("10KK", SIZE_ERR);
	/* overflow: of the multiplication, and of the number itself */
	size_bad("17179869184G", "size too large");
	size_bad("18014398509481984K", "size too large");
	size_bad("99999999999999999999", SIZE_ERR);
	size_bad("99999999999999999999K", SIZE_ERR);
}

/* ---- durations ---- */

static void
dur_ok(const char *s, int64_t want)
{
	int64_t v = -7;
	const char *err = NULL;

	assert_int_equal(parse_duration(s, &v, &err), 0);
	assert_int_equal(v, want);
}

static void
dur_bad(const char *s, const char *want_err)
{
	int64_t v = -7;
	const char *err = NULL;

	assert_int_equal(parse_duration(s, &v, &err), -1);
	assert_non_null(err);
	assert_string_equal(err, want_err);
	assert_int_equal(v, -7);
}

static void
test_parse_duration(void **state)
{
	(void)state;
	dur_ok("500ms", 500);
	dur_ok("0ms", 0);
	dur_ok("30s", 30000);
	dur_ok("10m", 600000);
	dur_ok("10min", 600000);
	dur_ok("4h", 4 * 3600000LL);
	dur_ok("2d", 2 * 86400000LL);
	dur_ok("1w", 7 * 86400000LL);
	dur_ok("45", 45000);             /* bare number = seconds */
	dur_ok("0", 0);
	dur_ok("9223372036854775ms", 9223372036854775LL);

	dur_bad("", DUR_ERR);
	dur_bad("s", DUR_ERR);
	dur_bad("ms", DUR_ERR);
	dur_bad("10x", DUR_ERR);
	dur_bad("10 s", DUR_ERR);
	dur_bad("-5s", DUR_ERR);
	dur_bad("1.5h", DUR_ERR);
	dur_bad("5m30s", DUR_ERR);
	dur_bad("10sec", DUR_ERR);
	dur_bad("99999999999999999999", DUR_ERR);
	dur_bad("9999999999999999w", "duration too large");
	dur_bad("9223372036854776s", "duration too large");
}

/* ---- rates ---- */

static void
rate_ok(const char *s, uint64_t count, int64_t per_ms)
{
	struct rate r = { 99, 99 };
	const char *err = NULL;

	assert_int_equal(parse_rate(s, &r, &err), 0);
	assert_true(r.count == count);
	assert_int_equal(r.per_ms, per_ms);
}

static void
rate_bad(const char *s)
{
	struct rate r = { 99, 99 };
	const char *err = NULL;

	assert_int_equal(parse_rate(s, &r, &err), -1);
	assert_non_null(err);
	assert_string_equal(err, RATE_ERR);
	assert_true(r.count == 99);
	assert_int_equal(r.per_ms, 99);
}

static void
test_parse_rate(void **state)
{
	(void)state;
	rate_ok("3600/h", 3600, 3600000);
	rate_ok("20/m", 20, 60000);
	rate_ok("5/s", 5, 1000);
	rate_ok("100/10m", 100, 600000);
	rate_ok("0/h", 0, 3600000);
	rate_ok("1/d", 1, 86400000);
	rate_ok("7/2w", 7, 14 * 86400000LL);
	rate_ok("50/500ms", 50, 500);
	rate_ok("3/min", 3, 60000);

	rate_bad("");
	rate_bad("3600");
	rate_bad("3600/");
	rate_bad("/h");
	rate_bad("3600h");
	rate_bad("3600/x");
	rate_bad("3600/10");        /* a period needs its unit */
	rate_bad("100/0m");
	rate_bad("-1/h");
	rate_bad("1.5/h");
	rate_bad("10 /h");
	rate_bad("10/ h");
	rate_bad("10/h/h");
	/* the period must fit in int64 milliseconds */
	rate_ok("1/9223372036854775807ms", 1, INT64_MAX);
	rate_ok("1/15250284452w", 1, 9223372036569600000LL);
	rate_bad("1/15250284453w");
	rate_bad("1/9223372036854775808ms");
	rate_bad("1/100000000000000w");
	rate_bad("1/99999999999999999999s");
}

/* ---- formatting, and parse(fmt(x)) == x ---- */

static void
test_fmt_duration(void **state)
{
	static const struct { int64_t ms; const char *s; } cases[] = {
		{ 0, "0ms" }, { 1, "1ms" }, { 500, "500ms" }, { 1000, "1s" },
		{ 1500, "1500ms" }, { 30000, "30s" }, { 90000, "90s" },
		{ 60000, "1m" }, { 600000, "10m" }, { 3600000, "1h" },
		{ 5400000, "90m" }, { 7200000, "2h" }, { 86400000, "1d" },
		{ 2 * 86400000LL, "2d" }, { 7 * 86400000LL, "1w" },
		{ 14 * 86400000LL, "2w" }, { 8 * 86400000LL, "8d" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int64_t back = -1;
		const char *err;

		fmt_duration(buf, sizeof(buf), cases[i].ms);
		assert_string_equal(buf, cases[i].s);
		assert_int_equal(parse_duration(buf, &back, &err), 0);
		assert_int_equal(back, cases[i].ms);
	}
	/* a short buffer is truncated, never overrun */
	memset(buf, 'x', sizeof(buf));
	fmt_duration(buf, 3, 1500);
	assert_string_equal(buf, "15");
	assert_int_equal(buf[3], 'x');
}

static void
test_fmt_rate(void **state)
{
	static const struct { uint64_t count; int64_t per; const char *s; } cases[] = {
		{ 3600, 3600000, "3600/h" }, { 20, 60000, "20/m" }, { 5, 1000, "5/s" },
		{ 100, 600000, "100/10m" }, { 1, 86400000, "1/d" }, { 10, 10000, "10/10s" },
		{ 7, 1500, "7/1500ms" }, { 9, 1, "9/ms" }, { 2, 7 * 86400000LL, "2/w" },
		{ 12, 12 * 3600000LL, "12/12h" },
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct rate r = { cases[i].count, cases[i].per }, back;
		const char *err;

		fmt_rate(buf, sizeof(buf), &r);
		assert_string_equal(buf, cases[i].s);
		assert_int_equal(parse_rate(buf, &back, &err), 0);
		assert_true(back.count == r.count);
		assert_int_equal(back.per_ms, r.per_ms);
	}
	/* 0 = unlimited, whatever the period */
	{
		struct rate r = { 0, 3600000 };
		fmt_rate(buf, sizeof(buf), &r);
		assert_string_equal(buf, "unlimited");
	}
	/* parse -> fmt keeps the canonical spelling */
	{
		static const char *const canon[] = { "3600/h", "20/m", "5/s", "100/10m", "1/w" };
		for (size_t i = 0; i < ARRAY_SIZE(canon); i++) {
			struct rate r;
			const char *err;
			assert_int_equal(parse_rate(canon[i], &r, &err), 0);
			fmt_rate(buf, sizeof(buf), &r);
			assert_string_equal(buf, canon[i]);
		}
	}
}

/* ---- host:port ---- */

static void
hp_ok(const char *s, const char *host, unsigned port)
{
	struct hostport hp;
	const char *err = NULL;

	assert_int_equal(parse_hostport(s, &hp, &err), 0);
	assert_string_equal(hp.host, host);
	assert_int_equal(hp.port, port);
}

static void
hp_bad(const char *s, const char *want_err)
{
	struct hostport hp;
	const char *err = NULL;

	assert_int_equal(parse_hostport(s, &hp, &err), -1);
	assert_non_null(err);
	assert_string_equal(err, want_err);
}

static void
test_parse_hostport(void **state)
{
	char big[300];

	(void)state;
	hp_ok("[127.0.0.1]:2526", "127.0.0.1", 2526);
	hp_ok("127.0.0.1:2525", "127.0.0.1", 2525);
	hp_ok("host:25", "host", 25);
	hp_ok("mx.example.com", "mx.example.com", 0);
	hp_ok("[::1]:25", "::1", 25);
	hp_ok("[::1]", "::1", 0);
	hp_ok("[smtp.example.net]:587", "smtp.example.net", 587);
	hp_ok("::1", "::1", 0);                  /* bare IPv6: no port */
	hp_ok("2001:db8::25", "2001:db8::25", 0);
	hp_ok("h:1", "h", 1);
	hp_ok("h:65535", "h", 65535);

	hp_bad("host:0", "port must be 1-65535");
	hp_bad("host:65536", "port must be 1-65535");
	hp_bad("host:99999999999999999999", "port must be 1-65535");
	hp_bad("host:smtp", "port must be 1-65535");
	hp_bad("host:", "port must be 1-65535");
	hp_bad("host:-1", "port must be 1-65535");
	hp_bad("[::1]:0", "port must be 1-65535");
	hp_bad("[::1]:", "port must be 1-65535");
	hp_bad("[::1", "missing ']' in [host]:port");
	hp_bad("[::1:25", "missing ']' in [host]:port");
	hp_bad("[::1]25", "expected [host]:port");
	hp_bad("[::1]x:25", "expected [host]:port");
	hp_bad("[]:25", "expected a host name or address");
	hp_bad(":25", "expected a host name or address");
	hp_bad("", "expected a host name or address");

	memset(big, 'a', 256);
	strcpy(big + 256, ":25");
	hp_bad(big, "expected a host name or address");
	big[255] = '\0';
	hp_ok(big, big, 0);                       /* 255 chars fit */
}

/* ---- CIDR ---- */

static struct sockaddr_storage ss;

static const struct sockaddr *
sa(const char *addr)
{
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

static struct cidr
cidr(const char *s)
{
	struct cidr c;
	const char *err = NULL;

	assert_int_equal(parse_cidr(s, &c, &err), 0);
	return c;
}

static void
cidr_bad(const char *s, const char *want_err)
{
	struct cidr c;
	const char *err = NULL;

	assert_int_equal(parse_cidr(s, &c, &err), -1);
	assert_non_null(err);
	assert_string_equal(err, want_err);
}

static void
test_cidr(void **state)
{
	struct cidr c;

	(void)state;
	c = cidr("127.0.0.0/8");
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_true(cidr_match(&c, sa("127.0.0.1")));
	assert_true(cidr_match(&c, sa("127.255.255.255")));
	assert_false(cidr_match(&c, sa("128.0.0.1")));
	assert_false(cidr_match(&c, sa("126.255.255.255")));
	assert_false(cidr_match(&c, sa("::1")));
	/* IPv4-mapped IPv6 (a dual-stack socket) against an IPv4 network */
	assert_true(cidr_match(&c, sa("::ffff:127.0.0.1")));
	assert_false(cidr_match(&c, sa("::ffff:10.0.0.1")));
	/* an IPv4-compatible or other v6 address with the same low bits is not mapped */
	assert_false(cidr_match(&c, sa("::127.0.0.1")));
	assert_false(cidr_match(&c, sa("64:ff9b::127.0.0.1")));

	/* host bits in the network are ignored */
	c = cidr("127.1.2.3/8");
	assert_true(cidr_match(&c, sa("127.9.9.9")));

	/* a single address: /32 implied or written */
	c = cidr("192.0.2.7");
	assert_int_equal(c.bits, 32);
	assert_true(cidr_match(&c, sa("192.0.2.7")));
	assert_false(cidr_match(&c, sa("192.0.2.6")));
	assert_true(cidr_match(&c, sa("::ffff:192.0.2.7")));
	c = cidr("192.0.2.7/32");
	assert_true(cidr_match(&c, sa("192.0.2.7")));
	assert_false(cidr_match(&c, sa("192.0.2.8")));

	/* prefixes that are not a multiple of 8 */
	c = cidr("10.0.0.0/12");
	assert_true(cidr_match(&c, sa("10.15.255.255")));
	assert_false(cidr_match(&c, sa("10.16.0.0")));
	c = cidr("192.168.1.128/25");
	assert_true(cidr_match(&c, sa("192.168.1.200")));
	assert_false(cidr_match(&c, sa("192.168.1.127")));

	/* /0: every address of its family */
	c = cidr("0.0.0.0/0");
	assert_int_equal(c.bits, 0);
	assert_true(cidr_match(&c, sa("1.2.3.4")));
	assert_true(cidr_match(&c, sa("255.255.255.255")));
	assert_true(cidr_match(&c, sa("::ffff:8.8.8.8")));
	assert_false(cidr_match(&c, sa("2001:db8::1")));
	c = cidr("::/0");
	assert_int_equal(c.family, AF_INET6);
	assert_true(cidr_match(&c, sa("2001:db8::1")));
	assert_true(cidr_match(&c, sa("::1")));
	assert_false(cidr_match(&c, sa("1.2.3.4")));

	/* IPv6 */
	c = cidr("::1");
	assert_int_equal(c.bits, 128);
	assert_true(cidr_match(&c, sa("::1")));
	assert_false(cidr_match(&c, sa("::2")));
	assert_false(cidr_match(&c, sa("127.0.0.1")));
	c = cidr("2001:db8::/32");
	assert_true(cidr_match(&c, sa("2001:db8:1234::1")));
	assert_true(cidr_match(&c, sa("2001:DB8:ffff:ffff:ffff:ffff:ffff:ffff")));
	assert_false(cidr_match(&c, sa("2001:db9::1")));
	c = cidr("fe80::/10");
	assert_true(cidr_match(&c, sa("febf::1")));
	assert_false(cidr_match(&c, sa("fec0::1")));
	c = cidr("2001:db8::1/128");
	assert_true(cidr_match(&c, sa("2001:db8::1")));
	assert_false(cidr_match(&c, sa("2001:db8::1:1")));
	c = cidr("::ffff:0:0/96");
	assert_true(cidr_match(&c, sa("::ffff:1.2.3.4")));

	/* other address families never match */
	{
		struct sockaddr_un un;
		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		c = cidr("0.0.0.0/0");
		assert_false(cidr_match(&c, (const struct sockaddr *)&un));
		c = cidr("::/0");
		assert_false(cidr_match(&c, (const struct sockaddr *)&un));
	}

	cidr_bad("nonsense", CIDR_ERR);
	cidr_bad("", CIDR_ERR);
	cidr_bad("/8", CIDR_ERR);
	cidr_bad("256.0.0.0/8", CIDR_ERR);
	cidr_bad("127.0.0/8", CIDR_ERR);
	cidr_bad("[::1]/128", CIDR_ERR);
	cidr_bad("127.0.0.0/33", "bad prefix length");
	cidr_bad("::/129", "bad prefix length");
	cidr_bad("127.0.0.0/", "bad prefix length");
	cidr_bad("127.0.0.0/-1", "bad prefix length");
	cidr_bad("127.0.0.0/8x", "bad prefix length");
	cidr_bad("127.0.0.0/8/8", "bad prefix length");
	{
		char big[100];
		memset(big, '1', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		cidr_bad(big, CIDR_ERR);
	}
}

/* ---- strings ---- */

static void
test_glob(void **state)
{
	(void)state;
	assert_true(glob_match("*.google.com", "aspmx.l.google.com"));
	assert_true(glob_match("*.google.com", "ALT1.ASPMX.L.GOOGLE.COM"));
	assert_true(glob_match("*.GOOGLE.com", "x.google.COM"));
	assert_true(glob_match("*.google.com", ".google.com"));
	assert_false(glob_match("*.google.com", "google.com"));
	assert_false(glob_match("*.google.com", "xgoogle.com"));
	assert_false(glob_match("*.google.com", "mx.google.com.evil.test"));
	assert_false(glob_match("*.google.com", "mx.google.co"));
	assert_true(glob_match("mx*.example.com", "mx1.example.com"));
	assert_true(glob_match("mx*.example.com", "mx.example.com"));
	assert_false(glob_match("mx*.example.com", "mail.example.com"));
	assert_true(glob_match("mta*", "mta5.am0.yahoodns.net"));
	assert_true(glob_match("*", ""));
	assert_true(glob_match("*", "anything.at.all"));
	assert_true(glob_match("**", "x"));
	assert_true(glob_match("", ""));
	assert_false(glob_match("", "x"));
	assert_false(glob_match("x", ""));
	assert_true(glob_match("exact.host", "EXACT.host"));
	assert_false(glob_match("exact.host", "exact.hostx"));
	/* backtracking over several stars */
	assert_true(glob_match("a*b*c", "aXbYc"));
	assert_true(glob_match("a*b*c", "abc"));
	assert_true(glob_match("a*b*c", "abbbcbc"));
	assert_false(glob_match("a*b*c", "aXbY"));
	assert_true(glob_match("*ab", "aab"));
	assert_true(glob_match("*.mail.protection.outlook.com",
	    "contoso-com.mail.protection.outlook.com"));
	assert_false(glob_match("*.mail.protection.outlook.com",
	    "contoso-com.mail-protection.outlook.com"));
}

static void
test_str_helpers(void **state)
{
	char s[32];

	(void)state;
	strcpy(s, "MiXeD.Example.COM");
	assert_ptr_equal(str_lower(s), s);
	assert_string_equal(s, "mixed.example.com");
	assert_true(str_iprefix("X-Sluice-Pool", "x-sluice-"));
	assert_false(str_iprefix("X-Sluic", "x-sluice-"));
	assert_true(str_iprefix("anything", ""));
	assert_true(hash_str("Example.COM") == hash_str("example.com"));
	assert_true(hash_str("example.com") != hash_str("example.org"));
	assert_true(hash_str("a") != hash_str("b"));
	assert_true(hash_str("ab") != hash_str("ba"));
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_random_id(void **state)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	enum { N = 2000 };
	char (*ids)[27] = calloc(N, 27);
	char **sorted = calloc(N, sizeof(char *));

	(void)state;
	assert_non_null(ids);
	assert_non_null(sorted);
	for (int i = 0; i < N; i++) {
		int64_t before = now_ms(), after;
		uint64_t t = 0;

		memset(ids[i], '!', 27);
		random_id(ids[i]);
		after = now_ms();
		assert_int_equal(strlen(ids[i]), 26);
		for (int k = 0; k < 26; k++)
			assert_non_null(memchr(alphabet, ids[i][k], 32));
		/* the first 8 characters are the clock in ms, modulo 2^40 */
		for (int k = 0; k < 8; k++)
			t = t * 32 + (uint64_t)(strchr(alphabet, ids[i][k]) - alphabet);
		if (((uint64_t)before >> 40) == ((uint64_t)after >> 40)) {
			assert_true(t >= ((uint64_t)before & ((1ULL << 40) - 1)));
			assert_true(t <= ((uint64_t)after & ((1ULL << 40) - 1)));
		}
		sorted[i] = ids[i];
	}
	qsort(sorted, N, sizeof(char *), cmp_str);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(sorted[i - 1], sorted[i]);
	/* the random part uses the whole alphabet */
	{
		int seen[32] = { 0 }, distinct = 0;
		for (int i = 0; i < N; i++)
			for (int k = 8; k < 26; k++)
				seen[strchr(alphabet, ids[i][k]) - alphabet] = 1;
		for (int k = 0; k < 32; k++)
			distinct += seen[k];
		assert_int_equal(distinct, 32);
	}
	free(sorted);
	free(ids);
}

static void
test_read_write_file(void **state)
{
	char path[] = "/tmp/sluice-test-util-XXXXXX";
	int fd = mkstemp(path);
	size_t len = 99;
	char *s;
	char big[70000];

	(void)state;
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(write_all(fd, big, sizeof(big)), 0);
	close(fd);
	s = read_file(path, &len);
	assert_non_null(s);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(s, big, sizeof(big));
	assert_int_equal(s[len], '\0');
	free(s);
	unlink(path);
	assert_null(read_file(path, &len));
	assert_int_equal(write_all(-1, "x", 1), -1);
}

/* ---- JSON builder ---- */

static void
json_parses(const char *s, size_t len)
{
	json_error_t e;
	json_t *v = json_loadb(s, len, JSON_ALLOW_NUL, &e);

	if (v == NULL)
		fail_msg("jansson rejects %s: %s", s, e.text);
	assert_true(json_is_object(v));
	json_decref(v);
}

static void
test_json_escaping(void **state)
{
	struct jbuf j;
	const char *s;
	size_t len;

	(void)state;
	jb_init_bare(&j);
	jb_str(&j, "q", "say \"hi\" \\o/");
	jb_str(&j, "ctl", "a\nb\rc\td\x01" "e\x1f" "f\x7f" "g\b\f");
	jb_str(&j, "utf8", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
	jb_str(&j, "k\"ey", "v");
	jb_str(&j, "empty", "");
	jb_str(&j, "skipped", NULL);
	jb_strn(&j, "nul", "a\0b", 3);
	jb_strn(&j, "cut", "abcdef", 3);
	s = jb_finish(&j, &len);
	assert_string_equal(s,
	    "{\"q\":\"say \\\"hi\\\" \\\\o/\","
	    "\"ctl\":\"a\\nb\\rc\\td\\u0001e\\u001ff\\u007fg\\u0008\\u000c\","
	    "\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\","
	    "\"k\\\"ey\":\"v\","
	    "\"empty\":\"\","
	    "\"nul\":\"a\\u0000b\","
	    "\"cut\":\"abc\"}");
	assert_int_equal(len, strlen(s));
	json_parses(s, len);
	/* and jansson reads the values back as written */
	{
		json_t *v = json_loadb(s, len, JSON_ALLOW_NUL, NULL);
		size_t n;
		assert_string_equal(json_string_value(json_object_get(v, "q")), "say \"hi\" \\o/");
		assert_string_equal(json_string_value(json_object_get(v, "ctl")),
		    "a\nb\rc\td\x01" "e\x1f" "f\x7f" "g\b\f");
		assert_string_equal(json_string_value(json_object_get(v, "utf8")),
		    "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
		n = json_string_length(json_object_get(v, "nul"));
		assert_int_equal(n, 3);
		assert_memory_equal(json_string_value(json_object_get(v, "nul")), "a\0b", 3);
		json_decref(v);
	}
	jb_free(&j);

	/* json_escape alone appends one quoted string */
	jb_init_bare(&j);
	j.len = 0;
	json_escape(&j, "x\"y", 3);
	assert_int_equal(j.len, 6);
	assert_memory_equal(j.buf, "\"x\\\"y\"", 6);
	jb_free(&j);
}

static void
test_json_types_and_arrays(void **state)
{
	struct jbuf j;
	const char *s;
	size_t len;

	(void)state;
	jb_init_bare(&j);
	jb_int(&j, "n", -42);
	jb_int(&j, "big", INT64_MAX);
	jb_double(&j, "d", 0.5);
	jb_bool(&j, "t", true);
	jb_bool(&j, "f", false);
	jb_time(&j, "at", 1700000000123LL);
	jb_raw(&j, "obj", "{\"k\":[1,2]}");
	jb_array(&j, "rcpts");
	jb_elem(&j, "a@x.test");
	jb_elem(&j, "b\"@x.test");
	jb_elem(&j, "");
	jb_array_end(&j);
	jb_array(&j, "none");
	jb_array_end(&j);
	jb_array(&j, "one");
	jb_elem(&j, "[");
	jb_elem(&j, "x");
	jb_array_end(&j);
	jb_str(&j, "after", "z");
	s = jb_finish(&j, &len);
	assert_string_equal(s,
	    "{\"n\":-42,\"big\":9223372036854775807,\"d\":0.5,\"t\":true,\"f\":false,"
	    "\"at\":\"2023-11-14T22:13:20.123Z\",\"obj\":{\"k\":[1,2]},"
	    "\"rcpts\":[\"a@x.test\",\"b\\\"@x.test\",\"\"],\"none\":[],"
	    "\"one\":[\"[\",\"x\"],\"after\":\"z\"}");
	json_parses(s, len);
	jb_free(&j);

	/* an array first, then nothing else */
	jb_init_bare(&j);
	jb_array(&j, "a");
	jb_array_end(&j);
	s = jb_finish(&j, &len);
	assert_string_equal(s, "{\"a\":[]}");
	jb_free(&j);

	/* an empty object */
	jb_init_bare(&j);
	s = jb_finish(&j, &len);
	assert_string_equal(s, "{}");
	assert_int_equal(len, 2);
	jb_free(&j);
}

static void
test_json_init_time_and_growth(void **state)
{
	struct jbuf j;
	const char *s;
	size_t len;
	char *big = malloc(5001);

	(void)state;
	/* jb_init puts "time" first, RFC 3339 UTC with milliseconds */
	jb_init(&j);
	jb_str(&j, "type", "delivery");
	s = jb_finish(&j, &len);
	assert_int_equal(len, strlen("{\"time\":\"2024-01-01T00:00:00.000Z\",\"type\":\"delivery\"}"));
	assert_memory_equal(s, "{\"time\":\"", 9);
	assert_true(s[13] == '-' && s[16] == '-' && s[19] == 'T' && s[22] == ':' &&
	    s[25] == ':' && s[28] == '.' && s[32] == 'Z');
	assert_string_equal(s + 33, "\",\"type\":\"delivery\"}");
	json_parses(s, len);
	jb_free(&j);

	/* beyond the 1024-byte stack buffer: moved to the heap, content intact */
	assert_non_null(big);
	for (int i = 0; i < 5000; i++)
		big[i] = i % 100 == 99 ? '"' : (char)('a' + i % 26);
	big[5000] = '\0';
	jb_init_bare(&j);
	for (int k = 0; k < 3; k++) {
		char key[8];
		snprintf(key, sizeof(key), "k%d", k);
		jb_str(&j, key, big);
	}
	s = jb_finish(&j, &len);
	assert_true(j.buf != j.stack);
	json_parses(s, len);
	{
		json_t *v = json_loadb(s, len, 0, NULL);
		assert_string_equal(json_string_value(json_object_get(v, "k2")), big);
		json_decref(v);
	}
	/* "{" + 3 x "kN":"..." (50 quotes escaped) + 2 commas + "}" */
	assert_int_equal(len, 1 + 3 * (4 + 1 + 2 + 5000 + 50) + 2 + 1);
	jb_free(&j);
	assert_true(j.buf == j.stack);
	assert_int_equal(j.len, 0);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_rate),
		cmocka_unit_test(test_fmt_duration),
		cmocka_unit_test(test_fmt_rate),
		cmocka_unit_test(test_parse_hostport),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_str_helpers),
		cmocka_unit_test(test_random_id),
		cmocka_unit_test(test_read_write_file),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_types_and_arrays),
		cmocka_unit_test(test_json_init_time_and_growth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
