/*
 * sluiced: the daemon. Parses the command line, loads the config, binds the
 * listeners (as root if need be), drops privileges, starts the job pool,
 * the workers and the control thread, reloads the spool, then waits for
 * signals: SIGHUP reloads (a bad config is logged and the old one kept),
 * SIGTERM/SIGINT stop gracefully (stop accepting, let transactions in
 * progress finish, exit 0).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "conf.h"
#include "control.h"
#include "dkim.h"
#include "dns.h"
#include "log.h"
#include "queue.h"
#include "site.h"
#include "smtp_client.h"
#include "smtp_server.h"
#include "spool.h"
#include "campaign.h"
#include "store.h"
#include "warmup.h"
#include "util.h"
#include "worker.h"

#define DEFAULT_CONFIG SYSCONFDIR "/sluice/sluice.conf"

static const char *config_path;
static bool opt_debug;
static struct event_base *main_base;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: sluiced [-c FILE] [-f] [-n] [-d] [-D] [-V]\n"
	    "  -c FILE  config file (default " DEFAULT_CONFIG ",\n"
	    "           or the built-in default config when that does not exist)\n"
	    "  -f       stay in the foreground\n"
	    "  -n       check the config and exit (0 ok, 1 errors with file:line)\n"
	    "  -d       debug logging (and log to standard error too)\n"
	    "  -D       print the directive table and exit\n"
	    "  -V       print the version and exit\n");
	exit(2);
}

static void
worker_init(struct worker *w)
{
	w->dns = dns_new(w->base, conf);
	if (w->dns == NULL)
		fatal("event=fatal msg=\"cannot start the resolver\"");
	sched_init(w);
	sites_init(w);
}

static void
start_accepting(void *arg)
{
	smtp_server_start(worker_self());
}

static void
worker_fini(struct worker *w)
{
	/* order: DNS callbacks may still schedule; sites hold connections */
	dns_free(w->dns);
	w->dns = NULL;
	sites_free(w);
	sched_free(w);
	campaign_worker_fini(w);
}

static void
reconfigure_worker(void *arg)
{
	struct worker *w = worker_self();
	dns_reconfigure(w->dns, conf);
	queue_route_reset();
	sites_reconfigure(w);
}

static bool
str_changed(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static int
do_reload(char *err, size_t errlen)
{
	const struct config *old = conf;
	struct config *c;

	/* SIGHUP is also logrotate's signal: reopen first, whatever follows */
	log_reopen();
	acct_reopen();
	c = conf_load(config_path, err, errlen);
	if (c == NULL) {
		log_err("event=reload-failed msg=\"keeping the running config\" errors=\"%s\"", err);
		return -1;
	}
	if (strcmp(c->spool, old->spool) != 0)
		log_warnx("event=reload-ignored directive=spool msg=\"spool changes need a restart\"");
	if (str_changed(c->log, old->log) && log_open(c->log, (enum log_level)c->log_level) < 0)
		log_warn("event=log-open-failed path=%s", c->log);
	if (str_changed(c->accounting, old->accounting) && acct_open(c->accounting) < 0)
		log_warn("event=accounting-open-failed path=%s", c->accounting);
	conf_install(c);
	log_set_level(opt_debug ? LOG_DEBUG : (enum log_level)c->log_level);
	if (smtp_server_reload(c, err, errlen) < 0)
		log_warnx("event=reload-listeners-failed err=\"%s\"", err);
	smtp_client_tls_init(err, errlen);
	for (int i = 0; i < nworkers; i++)
		worker_post(workers[i], reconfigure_worker, NULL);
	log_info("event=reloaded config=%s", c->path);
	return 0;
}

static int
reload_from_control(char *err, size_t errlen)
{
	return do_reload(err, errlen);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	char err[4096];
	do_reload(err, sizeof(err));
}

static void
on_term(evutil_socket_t sig, short what, void *arg)
{
	log_info("event=stopping signal=%d", (int)sig);
	event_base_loopexit(main_base, NULL);
}

static void
stop_accepting(void *arg)
{
	smtp_server_stop(worker_self());
}

static void
graceful_stop(void)
{
	/* 1. no new sessions; sessions finish their transaction */
	for (int i = 0; i < nworkers; i++)
		worker_post(workers[i], stop_accepting, NULL);
	for (int t = 0; t < 300; t++) {
		int open = 0;
		for (int i = 0; i < nworkers; i++)
			open += smtp_server_sessions(workers[i]);
		if (open == 0)
			break;
		usleep(100 * 1000);
	}
	control_stop();
	/* 2. injections in the job pool complete (and are queued or refused) */
	jobs_stop();
	/* 3. no new deliveries; those on the wire finish */
	atomic_store(&queue_stopping, true);
	for (int t = 0; t < 300 && atomic_load(&queue_inflight) > 0; t++)
		usleep(100 * 1000);
	/* 4. the store commits what the deliveries and sessions wrote */
	store_stop_writer();
	workers_stop();
}

static void
drop_privileges(const struct config *c)
{
	struct passwd *pw;

	if (geteuid() != 0 || c->user == NULL)
		return;
	if ((pw = getpwnam(c->user)) == NULL)
		fatal("event=fatal msg=\"unknown user %s\"", c->user);
	/* the spool, the store and the socket must belong to the service user */
	const char *dirs[] = { c->spool, c->store };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (dirs[i] == NULL)
			continue;
		if (chown(dirs[i], pw->pw_uid, pw->pw_gid) < 0 && errno != ENOENT)
			log_warn("event=chown-failed path=%s", dirs[i]);
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data.mdb", c->store);
	(void)!chown(path, pw->pw_uid, pw->pw_gid);
	snprintf(path, sizeof(path), "%s/lock.mdb", c->store);
	(void)!chown(path, pw->pw_uid, pw->pw_gid);
	snprintf(path, sizeof(path), "%s/tmp", c->spool);
	(void)!chown(path, pw->pw_uid, pw->pw_gid);
	snprintf(path, sizeof(path), "%s/q", c->spool);
	(void)!chown(path, pw->pw_uid, pw->pw_gid);
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	for (int i = 0; i < 1024; i++) {
		snprintf(path, sizeof(path), "%s/q/%c%c", c->spool, b32[i / 32], b32[i % 32]);
		(void)!chown(path, pw->pw_uid, pw->pw_gid);
	}
	if (setgroups(0, NULL) < 0 || initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		fatal("event=fatal msg=\"cannot drop privileges to %s\" err=\"%s\"", c->user, strerror(errno));
	if (setuid(0) == 0)
		fatal("event=fatal msg=\"privileges were not dropped\"");
	log_info("event=privileges-dropped user=%s", c->user);
}

static void
daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal("event=fatal msg=\"fork failed\" err=\"%s\"", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		fatal("event=fatal msg=\"fork failed\" err=\"%s\"", strerror(errno));
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (conf->log && strcmp(conf->log, "-") != 0)
			dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_to_stderr(false);
}

static int
write_pidfile(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	int rc = write_all(fd, buf, (size_t)n);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

int
main(int argc, char **argv)
{
	bool foreground = false, check_only = false;
	int ch;
	char err[16384];

	while ((ch = getopt(argc, argv, "c:fndDVh")) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'f': foreground = true; break;
		case 'n': check_only = true; break;
		case 'd': opt_debug = true; break;
		case 'D': conf_print_directives(); return 0;
		case 'V': printf("sluiced %s\n", PACKAGE_VERSION); return 0;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (config_path == NULL && access(DEFAULT_CONFIG, F_OK) == 0)
		config_path = DEFAULT_CONFIG;

	if (dkim_init() < 0) {
		fprintf(stderr, "sluiced: cannot initialise the DKIM library\n");
		return 1;
	}
	struct config *c = conf_load(config_path, err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		if (check_only)
			fprintf(stderr, "sluiced: config has errors\n");
		return 1;
	}
	if (check_only) {
		printf("%s: config ok\n", c->path);
		conf_free(c);
		dkim_shutdown();
		return 0;
	}
	conf_install(c);

	if (log_open(c->log, opt_debug ? LOG_DEBUG : (enum log_level)c->log_level) < 0) {
		fprintf(stderr, "sluiced: cannot open log %s: %s\n", c->log, strerror(errno));
		return 1;
	}
	/* startup problems reach the terminal; after that only -d echoes */
	log_to_stderr(true);
	if (acct_open(c->accounting) < 0)
		fatal("event=fatal msg=\"cannot open accounting log %s\" err=\"%s\"", c->accounting, strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	if (spool_init(c->spool, err, sizeof(err)) < 0)
		fatal("event=fatal msg=\"%s\"", err);
	if (store_open(c->store, c->store_map_size, err, sizeof(err)) < 0)
		fatal("event=fatal msg=\"%s\"", err);
	int n = c->workers > 0 ? c->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	smtp_server_set_workers(n);
	if (smtp_server_bind(c, err, sizeof(err)) < 0)
		fatal("event=fatal msg=\"cannot listen\" err=\"%s\"", err);
	if (smtp_client_tls_init(err, sizeof(err)) < 0)
		fatal("event=fatal msg=\"client TLS\" err=\"%s\"", err);
	/* threads do not survive fork: daemonize before any is started */
	if (!foreground)
		daemonize();
	if (c->pidfile && write_pidfile(c->pidfile) < 0)
		log_warn("event=pidfile-failed path=%s", c->pidfile);

	main_base = event_base_new();
	struct event *ev_hup = evsignal_new(main_base, SIGHUP, on_hup, NULL);
	struct event *ev_term = evsignal_new(main_base, SIGTERM, on_term, NULL);
	struct event *ev_int = evsignal_new(main_base, SIGINT, on_term, NULL);
	evsignal_add(ev_hup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);

	queue_init();
	jobs_start(c->spool_threads);
	workers_start(n, worker_init, worker_fini);
	/* the spool is scanned before anything new can arrive, so nothing is
	 * queued twice; the listeners' backlogs hold clients meanwhile */
	queue_load_spool();
	campaign_start();
	control_reload_fn = reload_from_control;
	if (control_start(c, err, sizeof(err)) < 0)
		fatal("event=fatal msg=\"control socket\" err=\"%s\"", err);
	drop_privileges(c);
	for (int i = 0; i < nworkers; i++)
		worker_post(workers[i], start_accepting, NULL);
	log_info("event=started version=%s pid=%ld workers=%d config=%s", PACKAGE_VERSION,
	    (long)getpid(), n, c->path);
	log_to_stderr(opt_debug);

	event_base_dispatch(main_base);

	graceful_stop();
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	event_base_free(main_base);
	workers_free();
	smtp_server_free();
	queue_shutdown();
	store_close();
	warmup_shutdown();
	if (conf->pidfile)
		unlink(conf->pidfile);
	log_info("event=stopped");
	conf_free_all();
	dkim_shutdown();
	libevent_global_shutdown();
	return 0;
}
