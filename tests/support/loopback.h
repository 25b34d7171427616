/* Listening sockets on 127.0.0.1 for the tests' own small servers. */
#ifndef DS_TEST_LOOPBACK_H
#define DS_TEST_LOOPBACK_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A socket listening on 127.0.0.1 at a port the kernel picks; *port gets
 * the port. Fails the test when the kernel refuses. */
static inline int loopback_listen(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    cr_assert_eq(listen(fd, 8), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port on 127.0.0.1 that nothing listens on: bound, read and closed. */
static inline int loopback_free_port(void) {
    int port;
    close(loopback_listen(&port));
    return port;
}

/* True when buf (NUL-terminated after its len bytes) holds a whole request:
 * the header block and the Content-Length bytes of body after it. */
static inline bool loopback_request_complete(const char *buf, size_t len) {
    const char *hend = strstr(buf, "\r\n\r\n");
    if (!hend) return false;
    const char *cl = strcasestr(buf, "content-length:");
    size_t blen = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
    return len >= (size_t)(hend + 4 - buf) + blen;
}

#endif
