/* Must not compile: the domain layer does no I/O, so no Postgres. */
#include <libpq-fe.h>
