/*
 * auth: the credentials file for SMTP AUTH. Passwords are never stored:
 * each user has a PBKDF2-HMAC-SHA-256 key with its own 16-byte random salt
 * and an iteration count chosen when it was made, so the cost can grow
 * without invalidating old entries. OpenSSL provides everything (no
 * libcrypt). Checks compare in constant time and burn the same work for
 * unknown users, so timing does not reveal which users exist.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "util.h"

#define SCHEME      "$pbkdf2-sha256$"
#define SALT_LEN    16
#define KEY_LEN     32
#define MIN_ITER    1000
#define MAX_ITER    10000000

struct auth_user {
	char *name;
	int iter;
	unsigned char salt[64];
	int saltlen;
	unsigned char key[KEY_LEN];
};

struct auth_db {
	struct auth_user *u;
	int n;
	struct auth_user dummy;         /* for unknown users */
};

static int
b64_decode(const char *s, size_t n, unsigned char *out, size_t outcap)
{
	unsigned char tmp[128];
	int len, pad = 0;

	if (n == 0 || n % 4 || n / 4 * 3 > sizeof(tmp))
		return -1;
	if ((len = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n)) < 0)
		return -1;
	if (s[n - 1] == '=')
		pad++;
	if (s[n - 2] == '=')
		pad++;
	len -= pad;
	if (len <= 0 || (size_t)len > outcap)
		return -1;
	memcpy(out, tmp, (size_t)len);
	return len;
}

/* Parse "$pbkdf2-sha256$ITER$SALT$KEY". */
static const char *
parse_hash(const char *h, struct auth_user *u)
{
	const char *p, *d1, *d2;
	char *end;
	long it;

	if (strncmp(h, SCHEME, strlen(SCHEME)) != 0) {
		if (h[0] == '$' || h[0] == '{')
			return "unsupported password scheme (want $pbkdf2-sha256$, see sluicectl user add)";
		return "plaintext password refused (make a hash with sluicectl user add)";
	}
	p = h + strlen(SCHEME);
	errno = 0;
	it = strtol(p, &end, 10);
	if (end == p || *end != '$' || errno || it < MIN_ITER || it > MAX_ITER)
		return "bad iteration count (1000..10000000)";
	d1 = end + 1;
	if ((d2 = strchr(d1, '$')) == NULL)
		return "malformed hash (want $pbkdf2-sha256$ITER$SALT$KEY)";
	u->iter = (int)it;
	if ((u->saltlen = b64_decode(d1, (size_t)(d2 - d1), u->salt, sizeof(u->salt))) < 8)
		return "bad salt (base64, at least 8 bytes)";
	if (b64_decode(d2 + 1, strlen(d2 + 1), u->key, sizeof(u->key)) != KEY_LEN)
		return "bad key (base64, 32 bytes)";
	return NULL;
}

static int
user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct auth_user *)a)->name, ((const struct auth_user *)b)->name);
}

struct auth_db *
auth_load(const char *path, char *err, size_t errlen)
{
	struct auth_db *db;
	struct stat st;
	char *text, *line, *save = NULL;
	int lineno = 0;
	size_t len;

	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "%s: readable by other users (chmod o-r)", path);
		return NULL;
	}
	if ((text = read_file(path, &len)) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	db = xcalloc(1, sizeof(*db));
	/* lines are split by hand: strtok_r would merge empty lines and
	 * shift the line numbers */
	for (line = text; line; line = save) {
		char *nl = strchr(line, '\n'), *colon, *p;
		struct auth_user u;
		const char *why;

		save = nl ? nl + 1 : NULL;
		if (nl)
			*nl = '\0';
		lineno++;
		if (nl && nl > line && nl[-1] == '\r')
			nl[-1] = '\0';
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		if (*p == '\0' || *p == '#')
			continue;
		memset(&u, 0, sizeof(u));
		if ((colon = strchr(p, ':')) == NULL || colon == p) {
			snprintf(err, errlen, "%s:%d: want user:hash", path, lineno);
			goto fail;
		}
		*colon = '\0';
		for (char *q = p; *q; q++)
			if ((unsigned char)*q <= ' ' || *q == 0x7f) {
				snprintf(err, errlen, "%s:%d: bad character in user name", path, lineno);
				goto fail;
			}
		if ((why = parse_hash(colon + 1, &u)) != NULL) {
			snprintf(err, errlen, "%s:%d: user %s: %s", path, lineno, p, why);
			goto fail;
		}
		u.name = xstrdup(p);
		for (int i = 0; i < db->n; i++)
			if (strcmp(db->u[i].name, u.name) == 0) {
				snprintf(err, errlen, "%s:%d: user %s listed twice", path, lineno, p);
				free(u.name);
				goto fail;
			}
		db->u = xrealloc(db->u, sizeof(*db->u) * (size_t)(db->n + 1));
		db->u[db->n++] = u;
	}
	OPENSSL_cleanse(text, len);
	free(text);
	qsort(db->u, (size_t)db->n, sizeof(*db->u), user_cmp);
	db->dummy.iter = db->n ? db->u[0].iter : AUTH_PBKDF2_ITER;
	db->dummy.saltlen = SALT_LEN;
	random_bytes(db->dummy.salt, SALT_LEN);
	random_bytes(db->dummy.key, KEY_LEN);
	return db;
fail:
	OPENSSL_cleanse(text, len);
	free(text);
	auth_free(db);
	return NULL;
}

void
auth_free(struct auth_db *db)
{
	if (!db)
		return;
	for (int i = 0; i < db->n; i++) {
		free(db->u[i].name);
		OPENSSL_cleanse(&db->u[i], sizeof(db->u[i]));
	}
	free(db->u);
	free(db);
}

int
auth_count(const struct auth_db *db)
{
	return db ? db->n : 0;
}

static bool
derive(const char *pass, const unsigned char *salt, int saltlen, int iter, unsigned char *out)
{
	return PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, saltlen, iter,
	    EVP_sha256(), KEY_LEN, out) == 1;
}

bool
auth_check(const struct auth_db *db, const char *user, const char *pass)
{
	struct auth_user key = { .name = (char *)user };
	const struct auth_user *u = NULL;
	unsigned char out[KEY_LEN];
	bool ok;

	if (db && db->n)
		u = bsearch(&key, db->u, (size_t)db->n, sizeof(*db->u), user_cmp);
	if (!db)
		return false;
	ok = derive(pass, (u ? u : &db->dummy)->salt, (u ? u : &db->dummy)->saltlen,
	    (u ? u : &db->dummy)->iter, out);
	ok = ok && CRYPTO_memcmp(out, (u ? u : &db->dummy)->key, KEY_LEN) == 0 && u != NULL;
	OPENSSL_cleanse(out, sizeof(out));
	return ok;
}

char *
auth_hash_iter(const char *pass, int iterations)
{
	unsigned char salt[SALT_LEN], key[KEY_LEN];
	char s64[64], k64[64];

	if (iterations < MIN_ITER)
		iterations = MIN_ITER;
	random_bytes(salt, sizeof(salt));
	if (!derive(pass, salt, SALT_LEN, iterations, key))
		fatal("event=fatal msg=\"PKCS5_PBKDF2_HMAC failed\"");
	EVP_EncodeBlock((unsigned char *)s64, salt, SALT_LEN);
	EVP_EncodeBlock((unsigned char *)k64, key, KEY_LEN);
	OPENSSL_cleanse(key, sizeof(key));
	return xasprintf(SCHEME "%d$%s$%s", iterations, s64, k64);
}

char *
auth_hash(const char *pass)
{
	return auth_hash_iter(pass, AUTH_PBKDF2_ITER);
}
