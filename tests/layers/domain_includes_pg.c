/* Must not compile: the domain layer may not use the infrastructure layer. */
#include "infra/pg.h"
