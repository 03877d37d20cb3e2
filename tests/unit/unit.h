/*
 * Helpers shared by the unit tests (header only: each test binary is one
 * .c file). Include after <cmocka.h>.
 */
#ifndef SLUICE_TEST_UNIT_H
#define SLUICE_TEST_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

/* dir = /tmp/sluice-test-NAME.PID/SUB, and the store opened there with a
 * map of map bytes. */
static inline void
unit_store_open(char *dir, size_t dirlen, const char *name, const char *sub, size_t map)
{
	char err[256];

	snprintf(dir, dirlen, "/tmp/sluice-test-%s.%ld/%s", name, (long)getpid(), sub);
	assert_int_equal(store_open(dir, map, err, sizeof(err)), 0);
}

/* Removes /tmp/sluice-test-NAME.PID (close the store first). */
static inline void
unit_tmp_remove(const char *name)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/sluice-test-%s.%ld", name, (long)getpid());
	assert_int_equal(system(cmd), 0);
}

/*
 * Fails unless conf/FILE in the source tree holds exactly builtin, the
 * compiled-in copy (named symbol, generated as the top of src/SRC says).
 * The file is found through $srcdir (make check), else from the build tree
 * next to the sources, else through this header's own path.
 */
static inline void
unit_builtin_matches_file(const char *file, const char *builtin, const char *symbol,
    const char *src)
{
	char path[4096], *text = NULL;
	const char *srcdir = getenv("srcdir");
	size_t len = 0;

	if (srcdir != NULL) {
		snprintf(path, sizeof(path), "%s/conf/%s", srcdir, file);
		text = read_file(path, &len);
	}
	if (text == NULL) {
		static const char *const tries[] = { "../../conf/", "../conf/", "conf/" };

		for (size_t i = 0; text == NULL && i < sizeof(tries) / sizeof(tries[0]); i++) {
			snprintf(path, sizeof(path), "%s%s", tries[i], file);
			text = read_file(path, &len);
		}
	}
	if (text == NULL) {
		const char *f = __FILE__, *cut = strstr(f, "tests/unit/unit.h");

		if (cut != NULL) {
			snprintf(path, sizeof(path), "%.*sconf/%s", (int)(cut - f), f, file);
			text = read_file(path, &len);
		}
	}
	if (text == NULL)
		fail_msg("cannot find conf/%s (set srcdir)", file);
	if (strcmp(text, builtin) != 0) {
		size_t i = 0;

		while (text[i] == builtin[i])
			i++;
		fail_msg("%s differs from %s at byte %zu (%zu vs %zu bytes): "
		    "regenerate it (see the comment at the top of src/%s)",
		    path, symbol, i, len, strlen(builtin), src);
	}
	free(text);
}

#endif
