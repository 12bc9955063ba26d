#include "lease.h"
#include "core/error.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACQUIRE_POLL_MS 500

/* The data dir's lock: a second process on the same dir and id fails here.
 * On the embedded log, a second process on the same dir fails whatever its
 * id: its log is in-process, so what it stored would reach none of the
 * first's sockets. */
static int lock_data_dir(natter_lease_t *l, char *err, size_t errlen)
{
    char path[640];
    const natter_config_t *cfg = &l->app->cfg;
    int embedded = strcmp(cfg->log_backend, "local") == 0;
    if (embedded)
        snprintf(path, sizeof(path), "%s/embedded.lock", cfg->data_dir);
    else
        snprintf(path, sizeof(path), "%s/node-%u.lock", cfg->data_dir, cfg->node_id);
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data dir %s: %s", cfg->data_dir, strerror(errno));
        return NATTER_EIO;
    }
    l->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->lock_fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NATTER_EIO;
    }
    if (flock(l->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (embedded)
            snprintf(err, errlen,
                     "another natter runs on data dir %s: nodes on the embedded log (in-process) cannot share a "
                     "store; give each node its own data dir and node id, or share a log (--log kafka)",
                     cfg->data_dir);
        else
            snprintf(err, errlen,
                     "another natter runs on data dir %s with --node-id %u; give each node its own data dir and "
                     "node id",
                     cfg->data_dir, cfg->node_id);
        close(l->lock_fd);
        l->lock_fd = -1;
        return NATTER_ECONFLICT;
    }
    return NATTER_OK;
}

/* The holder token of this data dir: read, or made and written once. */
static int holder_token(natter_lease_t *l, char *err, size_t errlen)
{
    char path[640], host[32] = "natter";
    const natter_config_t *cfg = &l->app->cfg;
    snprintf(path, sizeof(path), "%s/node-%u.holder", cfg->data_dir, cfg->node_id);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        int ok = fgets(l->holder, sizeof(l->holder), f) != NULL;
        fclose(f);
        l->holder[strcspn(l->holder, "\n")] = '\0';
        if (ok && l->holder[0] != '\0')
            return NATTER_OK;
    }
    uint8_t r[8];
    if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
        snprintf(err, errlen, "no randomness for a holder token");
        return NATTER_EIO;
    }
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(l->holder, sizeof(l->holder), "%s/%02x%02x%02x%02x%02x%02x%02x%02x", host, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
    if ((f = fopen(path, "w")) == NULL || fprintf(f, "%s\n", l->holder) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NATTER_EIO;
    }
    return NATTER_OK;
}

static int lease(natter_lease_t *l, natter_lease_op_t op)
{
    natter_store_t *st = l->app->store;
    return natter_store_node_lease(st, l->app->cfg.node_id, l->holder, l->app->cfg.node_lease_ttl_ms, op);
}

/* Renews every third of the TTL. Not renewed for a whole TTL: not held (the
 * store may be away; the id is still this node's unless another node takes
 * it). Found taken: this node stops. */
static void *renew_main(void *arg)
{
    natter_lease_t *l = arg;
    uint32_t ttl = l->app->cfg.node_lease_ttl_ms;
    uint64_t renewed = natter_mono_ns();
    pthread_setname_np(pthread_self(), "natter-lease");
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        struct timespec until;
        natter_mono_deadline(&until, (int)(ttl / 3));
        if (pthread_cond_timedwait(&l->wake, &l->lock, &until) != ETIMEDOUT)
            continue;
        pthread_mutex_unlock(&l->lock);
        int rc = lease(l, NATTER_LEASE_RENEW);
        pthread_mutex_lock(&l->lock);
        if (rc == NATTER_OK) {
            renewed = natter_mono_ns();
            atomic_store(&l->held, 1);
        } else if (rc == NATTER_ECONFLICT) {
            fprintf(stderr, "natter: the lease on node id %u was taken by another node: stopping\n",
                    l->app->cfg.node_id);
            atomic_store(&l->held, 0);
            atomic_store(&l->lost, 1);
            kill(getpid(), SIGTERM); /* main drains and exits */
            break;
        } else if (natter_mono_ns() - renewed > (uint64_t)ttl * 1000000u) {
            atomic_store(&l->held, 0);
        }
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* The store's lease, waiting up to one TTL (and a poll) for another holder's to run out. */
static int take_store_lease(natter_lease_t *l, char *err, size_t errlen)
{
    uint32_t ttl = l->app->cfg.node_lease_ttl_ms;
    uint64_t deadline = natter_mono_ns() + ((uint64_t)ttl + ACQUIRE_POLL_MS) * 1000000u;
    int rc, waited = 0;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    const struct timespec step = {0, ACQUIRE_POLL_MS * 1000000L};
    while ((rc = lease(l, NATTER_LEASE_ACQUIRE)) == NATTER_ECONFLICT && natter_mono_ns() < deadline) {
        if (!waited++)
            fprintf(stderr, "natter: node id %u is leased to another holder: waiting up to %u ms for it to run out\n",
                    l->app->cfg.node_id, ttl);
        int sig = sigtimedwait(&stop, NULL, &step); /* main blocked them: an operator's Ctrl-C ends the wait */
        if (sig > 0) {
            snprintf(err, errlen, "%s while waiting for the lease on node id %u", strsignal(sig),
                     l->app->cfg.node_id);
            return NATTER_EUNAVAIL;
        }
    }
    if (rc == NATTER_ECONFLICT)
        snprintf(err, errlen,
                 "node id %u is held by another live node (it renewed its lease while this node waited %u ms); "
                 "give each node its own --node-id",
                 l->app->cfg.node_id, ttl);
    else if (rc != NATTER_OK)
        snprintf(err, errlen, "cannot lease node id %u in the store: %s", l->app->cfg.node_id, natter_strerror(rc));
    return rc;
}

int natter_lease_take(natter_lease_t *l, natter_app_t *app, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->app = app;
    l->lock_fd = -1;
    int rc = lock_data_dir(l, err, errlen);
    if (rc == NATTER_OK)
        rc = holder_token(l, err, errlen);
    l->in_store = natter_store_has_node_lease(app->store);
    if (rc == NATTER_OK && l->in_store)
        rc = take_store_lease(l, err, errlen);
    if (rc != NATTER_OK) {
        if (l->lock_fd >= 0)
            close(l->lock_fd);
        l->lock_fd = -1;
        return rc;
    }
    atomic_store(&l->held, 1);
    if (l->in_store) {
        pthread_mutex_init(&l->lock, NULL);
        natter_mono_cond_init(&l->wake);
        pthread_create(&l->thread, NULL, renew_main, l);
    }
    return NATTER_OK;
}

void natter_lease_release(natter_lease_t *l)
{
    if (l->in_store && l->app != NULL) {
        pthread_mutex_lock(&l->lock);
        l->stop = 1;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        /* only a lease renewed in time: one the store could not renew (it
         * is away) runs out by itself, and waiting on the store here would
         * hold the exit up */
        if (!atomic_load(&l->lost) && atomic_load(&l->held))
            lease(l, NATTER_LEASE_RELEASE);
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
        l->in_store = 0;
    }
    if (l->lock_fd >= 0) {
        close(l->lock_fd);
        l->lock_fd = -1;
    }
}

int natter_lease_held(natter_lease_t *l)
{
    return atomic_load(&l->held);
}
