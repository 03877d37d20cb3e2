/*
 * sluicectl: the command-line client of the control API, plus local tools
 * (dkim keygen/check) that need no running daemon.
 */
#ifndef SLUICE_SLUICECTL_H
#define SLUICE_SLUICECTL_H

struct ctl_opts {
	const char *socket;            /* -s SOCKET */
	const char *config;            /* -c FILE (for local tools: resolver, key paths) */
	int json;                      /* --json */
};

/* `sluicectl dkim keygen|check ...` (ctl_dkim.c). Returns the exit code. */
int ctl_dkim(const struct ctl_opts *o, int argc, char **argv);
/* `sluicectl suppression add|remove|lookup|list|import|export ...`
 * (ctl_suppress.c; argv[0] is "suppression"). Returns the exit code. */
int ctl_suppression(const struct ctl_opts *o, int argc, char **argv);

/* `sluicectl campaign ...` and `sluicectl events import FILE` (ctl_campaign.c;
 * argv[0] is "campaign" or "events"). Returns the exit code. */
int ctl_campaign(const struct ctl_opts *o, int argc, char **argv);

/* `sluicectl verp keygen|check ...` (ctl_verp.c). Returns the exit code. */
int ctl_verp(const struct ctl_opts *o, int argc, char **argv);

#endif
