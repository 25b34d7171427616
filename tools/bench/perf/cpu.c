/* CPU time of the stack's processes on this machine, found by the TCP port
 * each listens on; see perf.h. */
#include "perf.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/common.h"

/* The inode of the socket listening on port in one of /proc/net/tcp{,6},
 * or 0. A line: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode". */
static unsigned long listen_inode(const char *table, int port) {
    FILE *f = fopen(table, "r");
    if (!f) return 0;
    char line[512];
    unsigned long found = 0;
    if (!fgets(line, sizeof line, f)) line[0] = '\0'; /* the header */
    while (!found && fgets(line, sizeof line, f)) {
        char local[128], st[8];
        unsigned long inode;
        if (sscanf(line, "%*s %127s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &inode) != 3) continue;
        const char *colon = strrchr(local, ':');
        if (strcmp(st, "0A") == 0 && colon && strtol(colon + 1, NULL, 16) == port) found = inode;
    }
    fclose(f);
    return found;
}

/* True when process pid holds the socket "socket:[inode]". */
static bool holds_socket(const char *pid, const char *want) {
    char dir[300];
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    if (!d) return false;
    bool held = false;
    struct dirent *e;
    while (!held && (e = readdir(d)) != NULL) {
        char path[600], target[64];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        held = strcmp(target, want) == 0;
    }
    closedir(d);
    return held;
}

pid_t perf_port_pid(int port) {
    unsigned long inode = listen_inode("/proc/net/tcp", port);
    if (!inode) inode = listen_inode("/proc/net/tcp6", port);
    if (!inode) return -1;
    char want[48];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir("/proc");
    if (!d) return -1;
    pid_t pid = -1;
    struct dirent *e;
    while (pid < 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        if (holds_socket(e->d_name, want)) pid = (pid_t)atol(e->d_name);
    }
    closedir(d);
    return pid;
}

/* utime, stime, cutime and cstime of pid in seconds (ticks[0..3]); false
 * when the process is gone. */
static bool stat_times(pid_t pid, double times[4]) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The name, in parentheses, may hold spaces: the fields follow the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long t[4];
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &t[0], &t[1],
                     &t[2], &t[3]) != 4)
        return false;
    double hz = (double)sysconf(_SC_CLK_TCK);
    for (int i = 0; i < 4; i++) times[i] = (double)t[i] / hz;
    return true;
}

double perf_proc_cpu_s(pid_t pid) {
    double t[4];
    return stat_times(pid, t) ? t[0] + t[1] : NAN;
}

double perf_tree_cpu_s(pid_t pid) {
    double t[4];
    if (!stat_times(pid, t)) return NAN;
    double total = t[0] + t[1] + t[2] + t[3];
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return total;
    int child;
    while (fscanf(f, "%d", &child) == 1) {
        double c = perf_proc_cpu_s(child);
        if (!isnan(c)) total += c;
    }
    fclose(f);
    return total;
}

double perf_self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- an account of several parts ------------------------------------------- */

void perf_cpu_add(perf_cpu_t *a, const char *name, int port, bool tree) {
    if (a->n >= PERF_CPU_MAX_PARTS || port <= 0) return;
    pid_t pid = perf_port_pid(port);
    if (pid < 0) return;
    for (size_t i = 0; i < a->n; i++)
        if (a->part[i].pid == pid) return; /* one process counted once */
    perf_cpu_part_t *p = &a->part[a->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->pid = pid;
    p->tree = tree;
}

void perf_cpu_add_url(perf_cpu_t *a, const char *name, const char *url) {
    char host[128];
    int port;
    if (url && perf_parse_url(url, host, sizeof host, &port) == 0) perf_cpu_add(a, name, port, false);
}

void perf_cpu_start(perf_cpu_t *a) {
    for (size_t i = 0; i < a->n; i++)
        a->part[i].start_s =
            a->part[i].tree ? perf_tree_cpu_s(a->part[i].pid) : perf_proc_cpu_s(a->part[i].pid);
    a->self_start_s = perf_self_cpu_s();
}

void perf_cpu_print(const perf_cpu_t *a, FILE *out, double changes) {
    if (changes <= 0) return;
    double total = 0;
    fprintf(out, "  CPU µs per change:");
    for (size_t i = 0; i < a->n; i++) {
        const perf_cpu_part_t *p = &a->part[i];
        double now = p->tree ? perf_tree_cpu_s(p->pid) : perf_proc_cpu_s(p->pid);
        if (isnan(now) || isnan(p->start_s)) {
            fprintf(out, " %s gone,", p->name);
            continue;
        }
        double us = (now - p->start_s) * 1e6 / changes;
        total += us;
        fprintf(out, " %s %.0f,", p->name, us);
    }
    double self_us = (perf_self_cpu_s() - a->self_start_s) * 1e6 / changes;
    fprintf(out, " this program %.0f; total %.0f\n", self_us, total + self_us);
}
