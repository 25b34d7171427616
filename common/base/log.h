/* JSON-lines logging to stderr: one line per event, written with one
 * write() so lines from several threads never interleave. Safe to call from
 * any thread, never from a signal handler. */
#ifndef DEALSCORE_LOG_H
#define DEALSCORE_LOG_H

typedef enum {
    DS_LOG_DEBUG = 0,
    DS_LOG_INFO = 1,
    DS_LOG_WARN = 2,
    DS_LOG_ERROR = 3,
} ds_log_level_t;

extern int ds__log_level; /* set once by ds_log_init before threads start */

/* Sets the service name and the minimum level printed. */
void ds_log_init(const char *service, ds_log_level_t level);
/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int ds_log_level_parse(const char *s);

void ds__log(ds_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the level before formatting anything. */
#define ds_log(level, ...)                                                                                   \
    do {                                                                                                     \
        if ((int)(level) >= ds__log_level) ds__log((level), __VA_ARGS__);                                    \
    } while (0)
#define ds_debug(...) ds_log(DS_LOG_DEBUG, __VA_ARGS__)
#define ds_info(...) ds_log(DS_LOG_INFO, __VA_ARGS__)
#define ds_warn(...) ds_log(DS_LOG_WARN, __VA_ARGS__)
#define ds_error(...) ds_log(DS_LOG_ERROR, __VA_ARGS__)

#endif
