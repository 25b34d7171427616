/* A loopback TCP proxy for fault tests: forwards every connection to an
 * upstream address until it is cut; while cut, it closes open connections
 * and new ones at once, as a server that went away would. */
#ifndef DS_TEST_TCPPROXY_H
#define DS_TEST_TCPPROXY_H

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCPPROXY_MAX 64

typedef struct {
    int lfd, port;
    char host[256], port_s[16];
    atomic_int up;
    atomic_int quit;
    int wake[2];
    int pairs[TCPPROXY_MAX][2];
    int npairs;
    pthread_t thread;
} tcpproxy_t;

/* A TCP connection to host:port (the first address that answers), or -1. */
static inline int tcpproxy_connect(const char *host, const char *port) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static inline int tcpproxy_upstream(tcpproxy_t *p) { return tcpproxy_connect(p->host, p->port_s); }

static inline void tcpproxy_drop_all(tcpproxy_t *p) {
    for (int i = 0; i < p->npairs; i++) {
        close(p->pairs[i][0]);
        close(p->pairs[i][1]);
    }
    p->npairs = 0;
}

static inline void *tcpproxy_main(void *arg) {
    tcpproxy_t *p = arg;
    while (!atomic_load(&p->quit)) {
        struct pollfd pf[2 + 2 * TCPPROXY_MAX];
        int n = 0;
        pf[n++] = (struct pollfd){p->lfd, POLLIN, 0};
        pf[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
        for (int i = 0; i < p->npairs; i++) {
            pf[n++] = (struct pollfd){p->pairs[i][0], POLLIN, 0};
            pf[n++] = (struct pollfd){p->pairs[i][1], POLLIN, 0};
        }
        if (poll(pf, (nfds_t)n, 200) < 0) continue;
        if (pf[1].revents) {
            char b[16];
            if (read(p->wake[0], b, sizeof b) < 0) {
            }
        }
        if (!atomic_load(&p->up)) tcpproxy_drop_all(p);
        if (pf[0].revents) {
            int c = accept(p->lfd, NULL, NULL);
            if (c >= 0) {
                int u = atomic_load(&p->up) && p->npairs < TCPPROXY_MAX ? tcpproxy_upstream(p) : -1;
                if (u < 0) {
                    close(c);
                } else {
                    p->pairs[p->npairs][0] = c;
                    p->pairs[p->npairs][1] = u;
                    p->npairs++;
                }
            }
        }
        for (int i = 0; i < p->npairs; i++) {
            int k = 2 + 2 * i;
            if (k + 1 >= n) break;
            bool dead = false;
            for (int side = 0; side < 2 && !dead; side++) {
                if (!pf[k + side].revents) continue;
                char buf[16384];
                ssize_t r = read(p->pairs[i][side], buf, sizeof buf);
                if (r <= 0) {
                    dead = true;
                    break;
                }
                for (ssize_t off = 0; off < r;) {
                    ssize_t w = write(p->pairs[i][1 - side], buf + off, (size_t)(r - off));
                    if (w <= 0) {
                        dead = true;
                        break;
                    }
                    off += w;
                }
            }
            if (dead) {
                close(p->pairs[i][0]);
                close(p->pairs[i][1]);
                p->pairs[i][0] = p->pairs[p->npairs - 1][0];
                p->pairs[i][1] = p->pairs[p->npairs - 1][1];
                p->npairs--;
                break; /* pollfd indexes moved: poll again */
            }
        }
    }
    tcpproxy_drop_all(p);
    return NULL;
}

/* Starts a proxy to host:port on a free loopback port (p->port). */
static inline int tcpproxy_start(tcpproxy_t *p, const char *host, const char *port) {
    memset(p, 0, sizeof *p);
    snprintf(p->host, sizeof p->host, "%s", host);
    snprintf(p->port_s, sizeof p->port_s, "%s", port);
    atomic_store(&p->up, 1);
    if (pipe(p->wake) != 0) return -1;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(p->lfd, 64) != 0) return -1;
    socklen_t len = sizeof sa;
    getsockname(p->lfd, (struct sockaddr *)&sa, &len);
    p->port = ntohs(sa.sin_port);
    return pthread_create(&p->thread, NULL, tcpproxy_main, p);
}

/* Cuts (up = 0) or restores (up = 1) the connection to upstream. */
static inline void tcpproxy_set_up(tcpproxy_t *p, int up) {
    atomic_store(&p->up, up);
    if (write(p->wake[1], "x", 1) < 0) {
    }
}

static inline void tcpproxy_stop(tcpproxy_t *p) {
    atomic_store(&p->quit, 1);
    if (write(p->wake[1], "x", 1) < 0) {
    }
    pthread_join(p->thread, NULL);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
}

#endif
