/*
 * The HTTP front door on the loop thread: h2o set-up, the listener, the
 * request handler that routes and hands work to the API workers, and the
 * receiver that sends their answers.
 */
#ifndef NATTER_HTTP_H
#define NATTER_HTTP_H

#include <stddef.h>

struct natter_app;

/* Configures h2o, opens the listener and registers the receivers.
 * 0, or NATTER_E* with a reason in err. */
int natter_http_start(struct natter_app *app, char *err, size_t errlen);
/* Stops accepting connections. */
void natter_http_stop_listening(struct natter_app *app);
void natter_http_dispose(struct natter_app *app);

#endif
