/* A disk whose flush takes longer, for bench/intake.py --flush-delay-ms: loaded with LD_PRELOAD into the
 * servers' processes (SQLite flushes inside the web workers) and into a private PostgreSQL cluster, it
 * lets every fsync() and fdatasync() do its work, then sleeps FLUSH_DELAY_US microseconds before
 * returning, as a cloud block volume or a disk without a power-safe cache keeps a flush waiting.
 *
 * The sleep costs no CPU, so what a request costs the machine is measured as before; what changes is how
 * long a commit waits, which is what group commit shares and a commit per request does not.
 *
 *     gcc -O2 -shared -fPIC -o slow_flush.so slow_flush.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static long delay_ns = -1;

static void wait_as_a_slower_disk(void) {
    if (delay_ns < 0) {
        const char *micros = getenv("FLUSH_DELAY_US");
        delay_ns = micros ? atol(micros) * 1000L : 0;
    }
    if (delay_ns > 0) {
        struct timespec pause = {delay_ns / 1000000000L, delay_ns % 1000000000L};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
            /* interrupted by a signal: sleep the rest */
        }
    }
}

/* The real call's result and errno, once the disk's wait is over. */
static int flushed_then_waited(int (*flush)(int), int descriptor) {
    int result = flush(descriptor);
    int error = errno;
    wait_as_a_slower_disk();
    errno = error;
    return result;
}

int fsync(int descriptor) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return flushed_then_waited(real, descriptor);
}

int fdatasync(int descriptor) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return flushed_then_waited(real, descriptor);
}
