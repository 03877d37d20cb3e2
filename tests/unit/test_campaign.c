/* Unit tests: campaign templates ({{var}}, defaults, HTML escaping, the
 * missing-variable check) and RFC 3339 parsing of start_at / event times. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "util.h"

static char *
render(const char *src, const char *vars_json, bool html)
{
	char err[200];
	struct tpl *t = tpl_compile(src, err, sizeof(err));
	json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
	struct sbuf out = { 0 };

	assert_non_null(t);
	tpl_render(t, vars, "x@y.test", html, &out);
	tpl_free(t);
	json_decref(vars);
	return out.p;
}

static void
test_render(void **state)
{
	char *s;
	(void)state;

	s = render("Hi {{name}}, {{ n }} items{{x|!}} to {{email}}", "{\"name\":\"Ann\",\"n\":3}", false);
	assert_string_equal(s, "Hi Ann, 3 items! to x@y.test");
	free(s);
	s = render("<p>{{name}}</p>{{ d | a & b }}", "{\"name\":\"<Ann & 'Bo'>\"}", true);
	assert_string_equal(s, "<p>&lt;Ann &amp; &#39;Bo&#39;&gt;</p>a &amp; b");
	free(s);
	s = render("{{b}} {{r}} {{z|none}}", "{\"b\":true,\"r\":1.5,\"z\":null}", false);
	assert_string_equal(s, "true 1.5 none");
	free(s);
	s = render("no placeholders", NULL, false);
	assert_string_equal(s, "no placeholders");
	free(s);
	s = render("", NULL, false);
	assert_string_equal(s, "");
	free(s);
}

static void
test_missing(void **state)
{
	char err[200];
	struct tpl *t = tpl_compile("{{a}} {{b|x}} {{email}} {{c}}", err, sizeof(err));
	json_t *v = json_loads("{\"a\":1}", 0, NULL);
	(void)state;

	assert_string_equal(tpl_missing(t, v), "c");
	json_object_set_new(v, "c", json_null());
	assert_string_equal(tpl_missing(t, v), "c");
	json_object_set_new(v, "c", json_string(""));
	assert_null(tpl_missing(t, v));
	assert_string_equal(tpl_missing(t, NULL), "a");
	json_decref(v);
	tpl_free(t);
}

static void
test_compile_errors(void **state)
{
	char err[200];
	(void)state;

	assert_null(tpl_compile("Hi {{name", err, sizeof(err)));
	assert_non_null(strstr(err, "unclosed"));
	assert_null(tpl_compile("Hi {{}}", err, sizeof(err)));
	assert_null(tpl_compile("Hi {{a b}}", err, sizeof(err)));
	assert_non_null(strstr(err, "a b"));
}

static void
test_time3339(void **state)
{
	int64_t t;
	(void)state;

	assert_int_equal(parse_time3339("2026-11-23T00:00:00Z", &t), 0);
	assert_int_equal(t, 1795392000000LL);
	assert_int_equal(parse_time3339("2026-11-23T01:30:00.25+01:30", &t), 0);
	assert_int_equal(t, 1795392000250LL);
	assert_int_equal(parse_time3339("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(parse_time3339("2024-02-29T12:00:00Z", &t), 0);
	assert_int_equal(t, 1709208000000LL);
	assert_int_equal(parse_time3339("2026-11-23", &t), -1);
	assert_int_equal(parse_time3339("2026-11-23T00:00:00", &t), -1);
	assert_int_equal(parse_time3339("2026-13-01T00:00:00Z", &t), -1);
	assert_int_equal(parse_time3339("2026-11-23T00:00:00Zjunk", &t), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_time3339),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
