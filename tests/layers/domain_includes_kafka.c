/* Must not compile: the domain layer does no I/O, so no Kafka. */
#include <librdkafka/rdkafka.h>
