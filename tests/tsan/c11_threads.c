/*
 * C11 threads over POSIX threads, for ThreadSanitizer builds only.
 *
 * Debian's librdkafka creates its threads with thrd_create and locks with
 * mtx_lock / cnd_wait (glibc's C11 threads). ThreadSanitizer (gcc 12,
 * clang 14) intercepts the pthread_* calls but not these, which glibc
 * implements on its internal pthread entry points: a thread it never saw
 * created crashes in its allocator, and every lock it never saw taken makes
 * a false race. Linked into a TSan test binary, these definitions take the
 * place of glibc's for librdkafka too (the executable's symbols come first)
 * and turn each call into the pthread call TSan follows. glibc's mtx_t and
 * cnd_t hold a pthread_mutex_t and a pthread_cond_t, so the objects are the
 * same memory either way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(mtx_t) >= sizeof(pthread_mutex_t), "mtx_t holds a pthread mutex");
_Static_assert(sizeof(cnd_t) >= sizeof(pthread_cond_t), "cnd_t holds a pthread condition");

static int status(int rc)
{
    return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : rc == EBUSY ? thrd_busy
           : rc == ENOMEM                           ? thrd_nomem
                                                    : thrd_error;
}

typedef struct {
    thrd_start_t func;
    void *arg;
} start_t;

static void *start(void *p)
{
    start_t s = *(start_t *)p;
    free(p);
    return (void *)(intptr_t)s.func(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
    start_t *s = malloc(sizeof(*s));
    if (s == NULL)
        return thrd_nomem;
    *s = (start_t){func, arg};
    int rc = pthread_create(thr, NULL, start, s);
    if (rc != 0)
        free(s);
    return status(rc);
}

int thrd_join(thrd_t thr, int *res)
{
    void *out;
    int rc = pthread_join(thr, &out);
    if (rc == 0 && res != NULL)
        *res = (int)(intptr_t)out;
    return status(rc);
}

int thrd_detach(thrd_t thr)
{
    return status(pthread_detach(thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &attr);
    pthread_mutexattr_destroy(&attr);
    return status(rc);
}

int mtx_lock(mtx_t *m)
{
    return status(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return status(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict until)
{
    return status(pthread_mutex_timedlock((pthread_mutex_t *)m, until));
}

int mtx_unlock(mtx_t *m)
{
    return status(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return status(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return status(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return status(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return status(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict until)
{
    return status(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, until));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}
