/* The benchmark programs' child processes, threads and files; see bench.h. */
#include "perf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/common.h"

extern char **environ;

pid_t perf_spawn(char *const argv[], char *const envp[], const char *out_path, const char *err_path,
                 char *errstr, size_t errstr_size) {
    if (errstr_size) errstr[0] = '\0';
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_path) posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err_path) posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "could not run %s: %s", argv[0], strerror(rc));
        return -1;
    }
    return pid;
}

int perf_wait_exit(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int perf_run_cmd(char *const argv[], const char *out_path, const char *err_path, char *errstr,
                 size_t errstr_size) {
    pid_t pid = perf_spawn(argv, environ, out_path, err_path, errstr, errstr_size);
    return pid < 0 ? -1 : perf_wait_exit(pid);
}

void perf_run_threads(int n, void *(*fn)(void *), void *arg) {
    pthread_t *th = ds_calloc((size_t)n, sizeof *th);
    for (int t = 0; t < n; t++) pthread_create(&th[t], NULL, fn, arg);
    for (int t = 0; t < n; t++) pthread_join(th[t], NULL);
    free(th);
}

void perf_last_line(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) {
            size_t len = strlen(line);
            if (len >= n) len = n - 1;
            memcpy(out, line, len);
            out[len] = '\0';
        }
    }
    fclose(f);
}

int perf_proc_memory(pid_t pid, double *rss_mb, double *peak_mb) {
    *rss_mb = *peak_mb = NAN;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) *rss_mb = (double)kb / 1024.0;
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) *peak_mb = (double)kb / 1024.0;
    }
    fclose(f);
    return isnan(*rss_mb) || isnan(*peak_mb) ? -1 : 0;
}

int perf_self_dir(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    snprintf(out, n, "%s", exe);
    return 0;
}

int perf_work_dir(const char *given, const char *name, char *out, size_t n, bool *made, char *errstr,
                  size_t errstr_size) {
    *made = false;
    if (given) {
        snprintf(out, n, "%s", given);
        if (mkdir(out, 0755) != 0 && errno != EEXIST) {
            snprintf(errstr, errstr_size, "cannot create %s: %s", out, strerror(errno));
            return -1;
        }
        return 0;
    }
    snprintf(out, n, "/tmp/%s-XXXXXX", name);
    if (!mkdtemp(out)) {
        snprintf(errstr, errstr_size, "cannot create a directory in /tmp: %s", strerror(errno));
        return -1;
    }
    *made = true;
    return 0;
}
