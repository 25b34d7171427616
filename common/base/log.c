/* JSON-lines logger: {"ts":..,"svc":..,"level":..,"msg":..} on stderr. */
#include "base/log.h"
#include "base/common.h"
#include "base/sb.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int ds__log_level = DS_LOG_INFO;
static char log_service[32] = "dealscore";

void ds_log_init(const char *service, ds_log_level_t level) {
    snprintf(log_service, sizeof log_service, "%s", service ? service : "dealscore");
    ds__log_level = (int)level;
}

int ds_log_level_parse(const char *s) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    if (strcasecmp(s, "warning") == 0) return DS_LOG_WARN;
    return -1;
}

void ds__log(ds_log_level_t level, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[40];
    ds_format_time_us(ds_now_us(), ts, sizeof ts);
    ds_sb_t line = {0};
    ds_sb_printf(&line, "{\"ts\":\"%s\",\"svc\":\"%s\",\"level\":\"%s\",\"msg\":", ts, log_service,
                 names[level < 0 || level > 3 ? 1 : level]);
    ds_sb_json_strn(&line, msg, strlen(msg), DS_SB_JSON_SHORT_ESCAPES);
    ds_sb_put(&line, "}\n", 2);
    /* One write() per line so concurrent threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line.p, line.len);
    (void)w;
    ds_sb_free(&line);
}
