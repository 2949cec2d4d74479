#!/bin/bash
# Same class as the release's kafka-e2e-latency.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.EndToEndLatency "$@"
