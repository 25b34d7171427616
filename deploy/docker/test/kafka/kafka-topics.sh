#!/bin/bash
# Stand-in for the distribution's kafka-topics.sh, enough for the compose
# healthcheck (`kafka-topics.sh --bootstrap-server HOST:PORT --list`): the
# Maven jars have no TopicCommand, and a JVM per check is slow on a busy
# machine, so it sends the broker an ApiVersions request (v0) over bash's
# /dev/tcp and succeeds when the broker answers it without error. Prints
# nothing.
server=
while (($#)); do
  [[ $1 == --bootstrap-server ]] && server=${2:-}
  shift
done
[[ $server == *:* ]] || { echo "kafka-topics.sh (test stand-in): --bootstrap-server HOST:PORT is required" >&2; exit 1; }
exec 3<>"/dev/tcp/${server%:*}/${server##*:}" || exit 1
# length 12 | api_key 18 (ApiVersions) | version 0 | correlation id 1 | client id "hc"
printf '\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02hc' >&3
reply=$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')
# size (4 bytes), correlation id 1, error code 0
[[ ${reply:8:12} == 000000010000 ]]
