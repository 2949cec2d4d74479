#!/bin/bash
# Same class as the release's kafka-configs.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ConfigCommand "$@"
