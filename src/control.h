/*
 * control: the HTTP/1.1 + JSON API on the control socket (evhttp on its own
 * thread and event_base). Requests that touch sites run on the owning
 * workers (worker_post) and the answer is gathered back here.
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

struct config;
int control_start(const struct config *c, char *err, size_t errlen);
void control_stop(void);

/* Called by control for POST /v1/reload; set by sluiced. Returns 0 or -1 with err. */
extern int (*control_reload_fn)(char *err, size_t errlen);

#endif
