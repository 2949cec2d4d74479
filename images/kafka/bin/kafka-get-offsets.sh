#!/bin/bash
# Same class as the release's kafka-get-offsets.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.GetOffsetShell "$@"
