/* Helpers for tests that run dealscore binaries as child processes. */
#ifndef DS_TEST_PROC_H
#define DS_TEST_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline long long proc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Path of a built binary: $DEALSCORE_BIN_DIR/name, else DS_BINARY_DIR/bin/name. */
static inline char *proc_bin(const char *name) {
    const char *dir = getenv("DEALSCORE_BIN_DIR");
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir && *dir ? dir : DS_BINARY_DIR "/bin", name) < 0) abort();
    return p;
}

/* A free TCP port on 127.0.0.1 (bound then released). */
static inline int proc_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts argv with the current environment plus env (NULL-terminated
 * "NAME=value" list, overriding), stdout and stderr to the files given (or
 * /dev/null when NULL). Returns the pid. */
static inline pid_t proc_spawn(char *const argv[], char *const env[], const char *out_path,
                               const char *err_path) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    for (char *const *e = env; e && *e; e++) putenv(*e);
    int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    execv(argv[0], argv);
    _exit(127);
}

/* Waits for pid up to timeout_ms; returns its exit status (0..255), 128+sig
 * when killed by a signal, or -1 on timeout. */
static inline int proc_wait(pid_t pid, int timeout_ms) {
    long long deadline = proc_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (proc_now_ms() > deadline) return -1;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL); /* polling interval, not a synchronisation sleep */
    }
}

/* Reads a whole file into a new string ("" when missing). */
static inline char *proc_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

/* Runs argv to completion with env, capturing stdout and stderr; returns the
 * exit status as proc_wait, or -1 after timeout_ms (the child is killed). */
static inline int proc_run(char *const argv[], char *const env[], char **out, char **err, int timeout_ms) {
    char outp[] = "/tmp/ds-proc-out-XXXXXX", errp[] = "/tmp/ds-proc-err-XXXXXX";
    close(mkstemp(outp));
    close(mkstemp(errp));
    pid_t pid = proc_spawn(argv, env, outp, errp);
    int rc = proc_wait(pid, timeout_ms);
    if (rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (out) *out = proc_slurp(outp);
    if (err) *err = proc_slurp(errp);
    unlink(outp);
    unlink(errp);
    return rc;
}

#endif
