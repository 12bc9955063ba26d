/* load_gather — runs the listener sets and gathers what they report.
 *
 * Up to o.sockets_per_process listeners, one set runs in a thread of this
 * process and its records go straight into load_track under lst.mu. Past
 * that (a process may hold 20,000 files here), the listeners are split
 * evenly over child processes forked after setup, each running one set
 * (its own sockets and catch-up connections, nothing else: it closes
 * every fd it inherited but its two pipes). Each child writes its records
 * to a pipe in load_wire's fixed format, in the order its sockets saw
 * them; a thread here reads every pipe and applies them to the same
 * load_track, so the verdict is the one a single process would reach.
 * The parent talks to a child through a second pipe: a byte 'S' asks for
 * a LOAD_REC_SYNC record once every record before it is written (so a
 * check never misses what a child already saw); closing the pipe stops the
 * child. A child also dies with its parent (PR_SET_PDEATHSIG).
 *
 * With https:// targets a child makes its own TLS context after the fork,
 * starting from the sessions the parent saved just before it, so even its
 * first sockets resume rather than pay a full handshake.
 *
 * A child's exit below main is the fork pattern's: the child's work ends
 * in _exit() at the fork point, never returning into the parent's code.
 */
#include "load_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define STALL_NS 30000000000ull /* no socket opened for this long: the start fails */
#define SYNC_NS 5000000000ull
#define STOP_NS 5000000000ull

typedef struct child {
    load_io_t io; /* the record pipe's read end; io.fd */
    pid_t pid;
    int ctl_fd;   /* write end of the control pipe, -1 once closed */
    int eof;      /* the record pipe ended */
    load_buf_t in;
    load_gather_t *g;
} child_t;

struct load_gather {
    load_t *L;
    pthread_t thread;
    int running;
    atomic_int stop;
    int epfd;       /* process mode: the pipes' epoll */
    load_io_t wake; /* an eventfd that ends an epoll wait */
    load_lset_t *set; /* thread mode */
    child_t *kids;
    size_t nkids;
};

/* --- records into load_track ---------------------------------------------- */

/* Thread mode: a record applied where it was made. */
static void emit_local(void *arg, const load_rec_t *r)
{
    load_t *L = arg;
    pthread_mutex_lock(&L->lst.mu);
    load_track_apply(L, r);
    pthread_mutex_unlock(&L->lst.mu);
}

/* Process mode: the records a child's pipe brought, applied in order. */
static void on_pipe(load_io_t *io, uint32_t events)
{
    (void)events;
    child_t *k = (child_t *)io;
    load_t *L = k->g->L;
    long n = load_buf_fill(&k->in, io->fd);
    size_t whole = load_buf_pending(&k->in) / LOAD_WIRE_SIZE;
    if (whole > 0) {
        const unsigned char *p = (const unsigned char *)k->in.p + k->in.off;
        pthread_mutex_lock(&L->lst.mu);
        for (size_t i = 0; i < whole; i++) {
            load_rec_t r;
            if (load_wire_decode(p + i * LOAD_WIRE_SIZE, &r) == 0)
                load_track_apply(L, &r);
        }
        pthread_mutex_unlock(&L->lst.mu);
        load_buf_consume(&k->in, whole * LOAD_WIRE_SIZE);
    }
    if (n < 0) {
        epoll_ctl(k->g->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        close(io->fd);
        io->fd = -1;
        __atomic_store_n(&k->eof, 1, __ATOMIC_RELEASE);
    }
}

static void on_wake(load_io_t *io, uint32_t events)
{
    (void)events;
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        perror("natter-load: eventfd");
}

static void *gather_main(void *arg)
{
    load_gather_t *g = arg;
    while (!atomic_load(&g->stop)) {
        if (g->set != NULL) {
            load_lset_turn(g->set, 100);
            continue;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(g->epfd, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            load_io_t *io = evs[i].data.ptr;
            io->on_event(io, evs[i].events);
        }
    }
    return NULL;
}

/* --- a child --------------------------------------------------------------- */

typedef struct child_ctx {
    load_io_t ctl; /* the control pipe's read end */
    int rec_fd;
    load_buf_t out;
    int syncs, stop;
} child_ctx_t;

static void emit_pipe(void *arg, const load_rec_t *r)
{
    child_ctx_t *c = arg;
    load_wire_encode(r, (unsigned char *)load_buf_reserve(&c->out, LOAD_WIRE_SIZE));
    c->out.len += LOAD_WIRE_SIZE;
}

static void on_ctl(load_io_t *io, uint32_t events)
{
    (void)events;
    child_ctx_t *c = (child_ctx_t *)io;
    char buf[64];
    ssize_t n = read(io->fd, buf, sizeof(buf));
    if (n <= 0 && !(n < 0 && errno == EINTR)) {
        c->stop = 1;
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        c->syncs += buf[i] == 'S';
}

/* Writes every pending record (the pipe is blocking: a slow parent slows
 * the child, nothing is dropped). 0, or -1 when the parent is gone. */
static int flush_records(child_ctx_t *c)
{
    while (load_buf_pending(&c->out) > 0) {
        ssize_t n = write(c->rec_fd, c->out.p + c->out.off, load_buf_pending(&c->out));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        load_buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

/* Closes every inherited fd but stdio and the two pipes. */
static void close_inherited(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo > 3)
        close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1)
        close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    close_range((unsigned)hi + 1, ~0u, 0);
}

static int child_main(load_t *L, size_t from, size_t to, int rec_fd, int ctl_fd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        return 1;
    close_inherited(rec_fd, ctl_fd);
    char err[256];
    load_tls_t *tls = L->tls != NULL ? load_tls_fork(L->tls, err, sizeof(err)) : NULL;
    if (L->tls != NULL && tls == NULL) {
        fprintf(stderr, "natter-load: listener process: %s\n", err);
        return 1;
    }
    child_ctx_t c = {.ctl = {.fd = ctl_fd, .on_event = on_ctl}, .rec_fd = rec_fd};
    load_lset_t *set = load_lset_new(L, from, to, tls, emit_pipe, &c);
    if (set == NULL || load_lset_watch(set, &c.ctl) != 0) {
        if (set != NULL)
            load_lset_free(set);
        load_tls_free(tls);
        return 1;
    }
    while (!c.stop) {
        load_lset_turn(set, 100);
        for (; c.syncs > 0; c.syncs--) {
            load_rec_t sync = {.kind = LOAD_REC_SYNC, .at = load_now_ns()};
            emit_pipe(&c, &sync);
        }
        if (flush_records(&c) != 0)
            break;
    }
    load_lset_free(set);
    load_tls_free(tls);
    load_buf_free(&c.out);
    return 0;
}

/* Forks the child for listeners [from, to); 0 or -1 (printed). */
static int fork_child(load_gather_t *g, child_t *k, size_t from, size_t to)
{
    int rec[2], ctl[2];
    if (pipe2(rec, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(ctl, O_CLOEXEC) != 0) {
        close(rec[0]);
        close(rec[1]);
        return -1;
    }
    fcntl(rec[0], F_SETPIPE_SZ, 1 << 20); /* room for a burst; the default 64 KiB is fine too */
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_main(g->L, from, to, rec[1], ctl[0], parent));
    close(rec[1]);
    close(ctl[0]);
    if (pid < 0) {
        perror("natter-load: fork");
        close(rec[0]);
        close(ctl[1]);
        return -1;
    }
    fcntl(rec[0], F_SETFL, O_NONBLOCK);
    k->pid = pid;
    k->ctl_fd = ctl[1];
    k->g = g;
    k->io.fd = rec[0];
    k->io.on_event = on_pipe;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &k->io};
    return epoll_ctl(g->epfd, EPOLL_CTL_ADD, rec[0], &ev);
}

static int start_children(load_gather_t *g, size_t nkids)
{
    load_t *L = g->L;
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g->epfd < 0)
        return -1;
    /* a child must inherit no connection of ours: it would keep it open */
    load_send_close_conns(L);
    if (L->tls != NULL)
        load_tls_save_sessions(L->tls);
    g->kids = load_xcalloc(nkids, sizeof(child_t));
    for (size_t i = 0; i < nkids; i++) {
        g->kids[i].io.fd = g->kids[i].ctl_fd = -1;
        size_t from = L->nlisteners * i / nkids, to = L->nlisteners * (i + 1) / nkids;
        if (fork_child(g, &g->kids[i], from, to) != 0)
            return -1;
        g->nkids++;
    }
    return 0;
}

/* --- the main thread's side ----------------------------------------------- */

static size_t kids_ended(const load_gather_t *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->nkids; i++)
        n += (size_t)__atomic_load_n(&g->kids[i].eof, __ATOMIC_ACQUIRE);
    return n;
}

/* Waits until every listener opened (or one gave up, a child died, or
 * none opened for STALL_NS). 0 or -1 (printed). */
static int wait_open(load_t *L)
{
    load_listen_state_t *st = &L->lst;
    uint64_t start = load_now_ns(), progress_at = start, last_note = start, last_opened = 0;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        uint64_t opened = st->opened, failed = st->failed;
        pthread_mutex_unlock(&st->mu);
        uint64_t now = load_now_ns();
        if (failed > 0) {
            fprintf(stderr, "natter-load: %llu listener sockets failed to open\n", (unsigned long long)failed);
            return -1;
        }
        if (opened >= L->nlisteners)
            return 0;
        if (kids_ended(L->gather) > 0) {
            fprintf(stderr, "natter-load: a listener process ended during the start\n");
            return -1;
        }
        if (opened > last_opened) {
            last_opened = opened;
            progress_at = now;
        }
        if (now - progress_at > STALL_NS) {
            fprintf(stderr, "natter-load: only %llu of %zu listener sockets open, none more for %.0f s\n",
                    (unsigned long long)opened, L->nlisteners, STALL_NS / 1e9);
            return -1;
        }
        if (!L->o.quiet && now - last_note > 5000000000ull) {
            fprintf(stderr, "natter-load: listener sockets: %llu/%zu open\n", (unsigned long long)opened,
                    L->nlisteners);
            last_note = now;
        }
        usleep(10000);
    }
}

int load_listen_start(load_t *L)
{
    load_track_init(L);
    load_gather_t *g = L->gather = load_xcalloc(1, sizeof(*g));
    g->L = L;
    g->epfd = -1;
    atomic_store(&g->stop, 0);
    g->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    g->wake.on_event = on_wake;
    size_t per = L->o.sockets_per_process;
    uint64_t start = load_now_ns();
    int rc;
    if (L->nlisteners > per) {
        rc = start_children(g, (L->nlisteners + per - 1) / per);
        if (rc == 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &g->wake};
            rc = epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->wake.fd, &ev);
        }
    } else {
        g->set = load_lset_new(L, 0, L->nlisteners, L->tls, emit_local, L);
        rc = g->set != NULL ? load_lset_watch(g->set, &g->wake) : -1;
    }
    if (rc != 0 || g->wake.fd < 0 || pthread_create(&g->thread, NULL, gather_main, g) != 0) {
        fprintf(stderr, "natter-load: cannot start the listeners: %s\n", strerror(errno));
        return -1;
    }
    g->running = 1;
    L->listener_procs = g->nkids;
    if (wait_open(L) != 0)
        return -1;
    L->connect_s = (double)(load_now_ns() - start) / 1e9;
    if (!L->o.quiet)
        fprintf(stderr, "natter-load: %zu listener sockets open in %.1f s (%zu process%s)\n", L->nlisteners,
                L->connect_s, g->nkids ? g->nkids : 1, g->nkids > 1 ? "es" : "");
    return 0;
}

void load_listen_sync(load_t *L)
{
    load_gather_t *g = L->gather;
    if (g == NULL || g->nkids == 0)
        return;
    pthread_mutex_lock(&L->lst.mu);
    uint64_t want = L->lst.syncs;
    pthread_mutex_unlock(&L->lst.mu);
    for (size_t i = 0; i < g->nkids; i++)
        if (!__atomic_load_n(&g->kids[i].eof, __ATOMIC_ACQUIRE) && write(g->kids[i].ctl_fd, "S", 1) == 1)
            want++;
    uint64_t deadline = load_now_ns() + SYNC_NS;
    for (;;) {
        pthread_mutex_lock(&L->lst.mu);
        uint64_t got = L->lst.syncs;
        pthread_mutex_unlock(&L->lst.mu);
        if (got >= want)
            return;
        if (load_now_ns() > deadline) {
            fprintf(stderr, "natter-load: listener processes did not answer a sync within %.0f s\n", SYNC_NS / 1e9);
            return;
        }
        usleep(1000);
    }
}

/* Waits until every child's pipe ended (they exit once their control
 * pipe closes), then reaps them, killing what is left after STOP_NS. */
static void stop_children(load_gather_t *g)
{
    for (size_t i = 0; i < g->nkids; i++) {
        close(g->kids[i].ctl_fd);
        g->kids[i].ctl_fd = -1;
    }
    uint64_t deadline = load_now_ns() + STOP_NS;
    while (kids_ended(g) < g->nkids && load_now_ns() < deadline)
        usleep(1000);
    for (size_t i = 0; i < g->nkids; i++) {
        child_t *k = &g->kids[i];
        int status;
        while (waitpid(k->pid, &status, WNOHANG) == 0) {
            if (load_now_ns() > deadline) {
                kill(k->pid, SIGKILL);
                waitpid(k->pid, &status, 0);
                break;
            }
            usleep(1000);
        }
    }
}

void load_listen_stop(load_t *L)
{
    load_gather_t *g = L->gather;
    if (g == NULL)
        return;
    if (g->running) {
        if (g->nkids > 0)
            stop_children(g);
        atomic_store(&g->stop, 1);
        uint64_t one = 1;
        if (write(g->wake.fd, &one, sizeof(one)) < 0)
            perror("natter-load: eventfd");
        pthread_join(g->thread, NULL);
    }
    if (g->set != NULL)
        load_lset_free(g->set);
    for (size_t i = 0; i < g->nkids; i++) {
        if (g->kids[i].io.fd >= 0)
            close(g->kids[i].io.fd);
        if (g->kids[i].ctl_fd >= 0)
            close(g->kids[i].ctl_fd);
        load_buf_free(&g->kids[i].in);
    }
    if (g->epfd >= 0)
        close(g->epfd);
    if (g->wake.fd >= 0)
        close(g->wake.fd);
    free(g->kids);
    free(g);
    L->gather = NULL;
}

