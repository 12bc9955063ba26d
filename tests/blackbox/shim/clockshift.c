/* An LD_PRELOAD shim for black-box tests: the wall clock (CLOCK_REALTIME
 * through clock_gettime) runs offset by the seconds written in the file
 * named by NATTER_TEST_CLOCK_FILE, read at every call, so a test can set
 * a running server's clock back or forward. The monotonic clock is left
 * alone, as an NTP step leaves it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long offset_s(void)
{
    const char *path = getenv("NATTER_TEST_CLOCK_FILE");
    char buf[32];
    if (path == NULL)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (real == NULL)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += offset_s();
    return rc;
}
