/* The JSON-lines logger (base/log.h): one line per event with the message
 * escaped as a JSON string, and nothing below the level. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

/* Runs the logging in fn with stderr sent to a file; returns what it wrote. */
static char *capture(void (*fn)(void)) {
    char path[] = "/tmp/ds-test-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    cr_assert_eq(pread(fd, out, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return out;
}

static void log_some(void) {
    ds_log_init("svc-x", DS_LOG_WARN);
    ds_info("not shown %d", 1);
    ds_warn("quote \" backslash \\ line\nbreak tab\t bell\x07 %s", "\xc3\xa9\xff");
    ds_error("second");
}

Test(log, one_escaped_json_line_per_event_at_or_above_the_level) {
    char *out = capture(log_some);
    /* {"ts":"2026-12-06T10:00:00.000000Z",... : the time is the clock's. */
    char *second = strchr(out, '\n');
    cr_assert_not_null(second);
    *second++ = '\0';
    cr_assert_eq(strncmp(out, "{\"ts\":\"", 7), 0, "%s", out);
    cr_expect_eq(out[7 + 26], 'Z', "%s", out);
    cr_expect_str_eq(
        out + 7 + 27,
        "\",\"svc\":\"svc-x\",\"level\":\"warn\",\"msg\":\"quote \\\" backslash \\\\ line\\nbreak tab\\t"
        " bell\\u0007 \xc3\xa9\xef\xbf\xbd\"}");
    cr_assert_eq(strncmp(second, "{\"ts\":\"", 7), 0);
    cr_expect_str_eq(second + 7 + 27, "\",\"svc\":\"svc-x\",\"level\":\"error\",\"msg\":\"second\"}\n",
                     "the last line, and nothing for the info below the level");
    free(out);
}
