/* Must compile: the domain layer uses the base layer and itself. */
#include "base/common.h"
#include "domain/features.h"
#include "domain/model.h"
