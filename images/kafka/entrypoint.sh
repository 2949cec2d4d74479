#!/bin/sh
# The official image inherits /__cacert_entrypoint.sh from its JRE base and
# passes the command through it. Keeping an entrypoint at the same path means
# `docker run IMAGE some-command` and a compose `command:` or `entrypoint:`
# override behave the same with either image.
exec "$@"
